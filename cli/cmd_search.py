"""``searchlib search``, ``info`` and ``list``: read the index."""

from __future__ import annotations

import click

from .main import exit_now, index_option, main
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
@index_option
@click.argument("query", required=False, default="")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Search by example: images like this file (indexed or not). Repeatable.")
@click.option("--add", multiple=True, metavar="TERM",
              help="Add a text or image term to the query; 'W:term' weighs it (e.g. '2:sunset'). Repeatable.")
@click.option("--subtract", multiple=True, metavar="TERM",
              help="Steer away from a text or image term (e.g. 'people'). Repeatable.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many images to return (with filters: that many matching images, when they exist).")
@click.option("--in", "folder", type=click.Path(file_okay=False), help="Only images under this folder.")
@click.option("--after", metavar="DATE", help="Taken on or after DATE (YYYY, YYYY-MM or YYYY-MM-DD; EXIF time, "
              "else file time).")
@click.option("--before", metavar="DATE", help="Taken on or before DATE (a whole year/month/day counts).")
@click.option("--camera", metavar="TEXT", help="Camera make or model contains TEXT (case-insensitive).")
@click.option("--min-width", type=click.IntRange(min=1), help="At least this many pixels wide.")
@click.option("--min-height", type=click.IntRange(min=1), help="At least this many pixels high.")
@click.option("--format", "formats", multiple=True, metavar="FMT", help="Image format: JPEG, PNG, GIF, WEBP... "
              "Repeatable.")
@click.option("--tag", "tags", multiple=True, metavar="LABEL", help="Only images tagged LABEL by 'searchlib tag'.")
@click.option("--min-score", type=float, help="Drop hits whose cosine score is below this.")
@click.option("--relative", type=click.FloatRange(min=0), metavar="F",
              help="Drop hits far below the best: keep scores >= best - F * |best| (e.g. 0.15). CLIP "
                   "scores of unrelated images sit only a little below related ones, and where they sit "
                   "differs per query, so a cut relative to the best adapts where --min-score cannot.")
@click.option("--sort", type=click.Choice(["score", "date"]), default="score", show_default=True,
              help="Order of the kept hits: best first, or by date taken (oldest first).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of hits (rank, id, path, score and metadata).")
@click.pass_obj
def search_cmd(obj: dict, query: str, images: tuple[str, ...], add: tuple[str, ...], subtract: tuple[str, ...],
               k: int, folder: str | None, after: str | None, before: str | None, camera: str | None,
               min_width: int | None, min_height: int | None, formats: tuple[str, ...], tags: tuple[str, ...],
               min_score: float | None, relative: float | None, sort: str, as_json: bool) -> None:
    """Find the images that best match QUERY, a description in plain words.

    \b
    QUERY may combine terms:  "beach + sunset - people"  ("2:sunset" weighs a term;
    only " + " and " - " with spaces split, so "t-shirt" stays whole). A term that is
    an existing file path is an image. Scores are cosine similarities (higher is closer).
    """
    from searchlib.filters import Filters, parse_date

    if not query.strip() and not images and not add:
        raise click.UsageError("give a QUERY, --image PATH or --add TERM")
    filters = Filters(folder=folder, after=parse_date(after) if after else None,
                      before=parse_date(before, end=True) if before else None, camera=camera,
                      min_width=min_width, min_height=min_height, formats=formats, tags=tags)
    with _open(obj) as index:
        hits = index.query(query, k=k, add=tuple(images) + add, subtract=subtract, filters=filters,
                           min_score=min_score, relative=relative, sort=sort)
    if as_json:
        echo_json([h.to_dict() for h in hits])
    elif not hits:
        click.echo("no matching images", err=True)
    else:
        rows = [[str(h.rank), f"{h.score:.3f}", _date(h.metadata), h.path] for h in hits]
        click.echo(table(["rank", "score", "date", "path"], rows))
    exit_now()


@main.command("info")
@index_option
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
@index_option
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
