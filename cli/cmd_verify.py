"""``searchlib verify``: consistency check of catalog, FAISS cache and files."""

from __future__ import annotations

import click

from .main import index_option, main
from .output import echo_json


@main.command("verify")
@index_option
@click.option("--repair", is_flag=True,
              help="Fix what is found: drop rows without a valid vector or whose file is gone, drop "
                   "orphan vectors, rebuild the FAISS file from the catalog.")
@click.option("--no-files", is_flag=True, help="Skip checking that indexed files still exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@click.pass_obj
def verify_cmd(obj: dict, repair: bool, no_files: bool, as_json: bool) -> None:
    """Check that the catalog, the FAISS index and the files on disk agree.

    Exits 0 when the index is consistent (or was repaired), 1 when problems remain. Changed files
    are reported but are not problems: 'searchlib index' re-embeds them.
    """
    from searchlib import open_index
    from searchlib.verify import verify

    with open_index(obj["index_dir"]) as index:
        report = verify(index, repair=repair, check_files=not no_files)
    fixed = bool(report.repaired)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(f"images: {report.images}, stored vectors: {report.stored_vectors}, "
                   f"FAISS file: {report.faiss_file}")
        for label, items in [("rows without a vector", report.rows_without_vector),
                             ("orphan vectors", report.orphan_vectors), ("invalid vectors", report.bad_vectors),
                             ("missing files", report.missing_files), ("changed files", report.changed_files)]:
            if items:
                click.echo(f"{label}: {len(items)}" + (f" (e.g. {items[0]})" if items else ""))
        for action in report.repaired:
            click.echo(f"repaired: {action}")
        click.echo("ok" if report.ok else ("repaired" if fixed else "problems found; run with --repair"))
    if not report.ok and not fixed:
        raise click.exceptions.Exit(1)
