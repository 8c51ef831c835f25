"""``searchlib search``, ``info`` and ``list``: read the index."""

from __future__ import annotations

import click

from .main import main
from .output import echo_json, human_bytes, table


def _date(meta: dict) -> str:
    """Capture date from EXIF, else the file's modification date."""
    if meta.get("taken_at"):
        return str(meta["taken_at"])[:10]
    from datetime import datetime

    return datetime.fromtimestamp(meta["mtime"]).strftime("%Y-%m-%d") if meta.get("mtime") else ""


def _open(obj: dict):
    from searchlib import open_index

    return open_index(obj["index_dir"])


@main.command("search")
@click.argument("query")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many images to return.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of hits (rank, id, path, score and metadata), best first.")
@click.pass_obj
def search_cmd(obj: dict, query: str, k: int, as_json: bool) -> None:
    """Find the images that best match QUERY, a description in plain words.

    The index's own model embeds the query; scores are cosine similarities (higher is closer).
    """
    with _open(obj) as index:
        hits = index.search(query, k=k)
    if as_json:
        echo_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no images in the index yet; add some with 'searchlib index PATH'", err=True)
        return
    rows = [[str(h.rank), f"{h.score:.3f}", _date(h.metadata), h.path] for h in hits]
    click.echo(table(["rank", "score", "date", "path"], rows))


@main.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def info_cmd(obj: dict, as_json: bool) -> None:
    """Show what the index holds: image and vector counts, model, index type, sizes on disk."""
    with _open(obj) as index:
        info = index.info()
    if as_json:
        echo_json(info)
        return
    model = info["model"] or {}
    total = sum(info["bytes_on_disk"].values())
    click.echo(f"index:       {info['index']}")
    click.echo(f"images:      {info['images']}")
    click.echo(f"vectors:     {info['vectors']} ({info['index_type']}, dim {info['dim']})")
    kind = "exact" if info["exact"] else f"approximate, nprobe {info['nprobe']}"
    click.echo(f"recall@10:   {info['recall_at_10']:.3f} ({kind}; requested: {info['index_type_requested']})")
    click.echo(f"model:       {model.get('name', '-')}")
    click.echo(f"on disk:     {human_bytes(total)}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects with path and metadata.")
@click.pass_obj
def list_cmd(obj: dict, as_json: bool) -> None:
    """List the indexed images (path, size, date, dimensions)."""
    with _open(obj) as index:
        images = list(index.images())
    if as_json:
        echo_json(images)
        return
    rows = [[_date(im), f"{im['width']}x{im['height']}", im["path"]] for im in images]
    if rows:
        click.echo(table(["date", "size", "path"], rows))
    click.echo(f"{len(images)} images", err=True)
