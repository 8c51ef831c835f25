"""``searchlib verify``: consistency check of catalog, FAISS cache and files."""

from __future__ import annotations

import click

from .common import index_option, open_from
from .output import clean, echo_json


@click.command("verify", short_help="Check catalog, caches and files agree; --repair fixes.")
@index_option
@click.option("--repair", is_flag=True,
              help="Fix what is found: drop rows without a valid vector, whose file is gone or can no "
                   "longer be read, drop orphan vectors, rebuild the FAISS file from the catalog.")
@click.option("--no-files", is_flag=True, help="Skip checking that indexed files still exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@click.pass_obj
def verify_cmd(obj: dict, repair: bool, no_files: bool, as_json: bool) -> None:
    """Check that the catalog, the FAISS index, the exported text tower and the files on disk agree.

    Exits 0 when nothing needs attention (or everything was repaired), 1 when problems remain.
    Some findings heal by themselves and are only noted: a missing or stale FAISS file (the next
    search rebuilds or catches it up), a missing text tower (the next run exports it). Changed
    files are not problems either: 'searchlib index' re-embeds them (and drops those it cannot read).
    """
    from searchlib.verify import verify

    with open_from(obj) as index:
        report = verify(index, repair=repair, check_files=not no_files)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(f"images: {report.images}, stored vectors: {report.stored_vectors}, catalog: {report.catalog}, "
                   f"FAISS file: {report.faiss_file}, text tower: {report.text_encoder}")
        if report.changed_files:
            click.echo(f"changed files: {len(report.changed_files)} (e.g. {clean(report.changed_files[0])}); "
                       "'searchlib index' re-embeds them (and drops those it cannot read)")
        for note in report.notes:
            click.echo(f"note: {note}")
        for action in report.repaired:
            click.echo(f"repaired: {action}")
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        if report.ok:
            click.echo("ok" + (" (repaired)" if report.repaired else ""))
        elif report.catalog != "ok":
            click.echo("the catalog is damaged: restore it from a backup, or move the index away and index again")
        else:
            click.echo("problems found; run with --repair" if not repair else "problems remain after --repair")
    if not report.ok:
        raise click.exceptions.Exit(1)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(verify_cmd)
