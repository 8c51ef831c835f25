"""``searchlib search``, ``info`` and ``list``: read the index."""

from __future__ import annotations

import os
from dataclasses import replace

import click

from .common import exit_now, index_option, open_from
from .output import clean, date_cell, echo_json, emit, human_bytes, output_options, table
from .terms import query_terms


@click.command("search", short_help="Find the images that best match a description.")
@index_option
@click.argument("query", required=False, default="")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Search by example: images like this file (indexed or not). Repeatable.")
@click.option("--add", multiple=True, metavar="TERM",
              help="Add a text or image term ('./photo.jpg', '~/x.png': a path); 'W:term' weighs it "
                   "(e.g. '2:sunset'). Repeatable.")
@click.option("--subtract", multiple=True, metavar="TERM",
              help="Steer away from a text or image term (e.g. 'people'). Repeatable.")
@click.option("-k", "--top", "k", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="How many images to return (with filters: that many matching images, when they exist).")
@click.option("--offset", type=click.IntRange(0, 9_999), default=0, show_default=True,
              help="Skip this many of the best results (the next page: --offset 10 -k 10).")
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
@click.option("--text", "text_words", metavar="WORDS",
              help="Only images whose read text (index --read-text) contains every word, as a case- and "
                   "accent-insensitive substring ('pharm' finds PHARMACY).")
@click.option("--place", "places", multiple=True, metavar="NAME",
              help="Taken in NAME: a city, region, country or country code, from the photo's GPS "
                   "(e.g. Lisbon, Portugal, PT). Repeatable: all must match. A QUERY ending in "
                   "'in/at/near NAME' does the same when the index holds NAME.")
@click.option("--near", metavar="LAT,LON", help="Taken within --within KM of this GPS position (degrees).")
@click.option("--within", "within_km", type=click.FloatRange(min=0, min_open=True), metavar="KM",
              help="The radius of --near in km (default 10).")
@click.option("--media", type=click.Choice(["image", "video"]),
              help="Only images, or only videos (searched scene by scene).")
@click.option("--all-segments", is_flag=True,
              help="Every matching segment of a video is a hit of its own (by default a video is one hit: "
                   "its best segment, with the others under 'segments' in --json).")
@click.option("--min-score", type=float, help="Drop hits whose cosine score is below this.")
@click.option("--relative", type=float, metavar="F",
              help="Drop hits far below the best: keep scores >= best - F * |best| (e.g. 0.15). CLIP "
                   "scores of unrelated images sit only a little below related ones, and where they sit "
                   "differs per query, so a cut relative to the best adapts where --min-score cannot.")
@click.option("--relevant", is_flag=True,
              help="Keep only hits judged relevant: calibrated relevance >= 0.5 (the same scale for "
                   "every query; single text queries, not combined ones). A query that matches nothing "
                   "returns nothing.")
@click.option("--sort", type=click.Choice(["score", "date", "date-asc"]), default="score", show_default=True,
              help="Order: best first, newest first (date) or oldest first (date-asc), by date taken. With "
                   "--relevant (or --min-score, --relative) every kept hit is ordered, then paged; without, "
                   "each page holds the next -k best hits in date order.")
@click.option("--collapse-duplicates", "collapse", is_flag=True,
              help="Show near-duplicates (the 'duplicates' command's threshold) once, as their best hit; "
                   "the JSON lists the folded ids in \"duplicates\".")
@click.option("--rerank", type=click.IntRange(0, 10_000), metavar="N",
              help="On a compressed index, re-rank the best N candidates exactly (default: the index's setting).")
@output_options
@click.pass_obj
def search_cmd(obj: dict, query: str, images: tuple[str, ...], add: tuple[str, ...], subtract: tuple[str, ...],
               k: int, offset: int, folder: str | None, after: str | None, before: str | None, camera: str | None,
               min_width: int | None, min_height: int | None, formats: tuple[str, ...], tags: tuple[str, ...],
               text_words: str | None, places: tuple[str, ...], near: str | None, within_km: float | None,
               media: str | None, all_segments: bool, min_score: float | None, relative: float | None,
               relevant: bool, sort: str, collapse: bool, rerank: int | None, as_json: bool, as_nl: bool,
               as_paths: bool, nul: bool) -> None:
    """Find the images that best match QUERY, a description in plain words.

    \b
    QUERY may combine terms:  "beach + sunset - people"  ("2:sunset" weighs a term;
    only " + " and " - " with spaces split, so "t-shirt" stays whole). QUERY is text;
    a term is an image only when it is clearly a path to a file ("./cat.jpg",
    "~/x.png", "dir/y.jpg"). Scores are cosine similarities (higher is closer);
    relevance (single text queries) is calibrated: 0.5 and above means a likely
    match, on the same scale for every query; combined queries get none.
    """
    from searchlib.filters import Filters

    if not query.strip() and not images and not add:
        raise click.UsageError("give a QUERY, --image PATH or --add TERM")
    for path in images:
        if not os.path.isfile(path):
            raise click.BadParameter(f"{path} is not a regular file", param_hint="--image")
    if within_km is not None and not near:
        raise click.UsageError("--within needs --near LAT,LON")
    filters = Filters.from_strings(folder, after, before, camera, min_width, min_height, formats, tags,
                                   places, near, within_km, text_words, media)
    query_terms(query, add, subtract, images)  # a bad image term fails before the index opens
    with open_from(obj) as index:
        index.expect_few_queries()  # one process, one query: the text tower's quick load
        read = index.place_query(query) if query.strip() else None
        if read is not None and read.places:  # "... in Tokyo": the rest is the text, Tokyo a filter
            query, filters = read.text, replace(filters, places=filters.places + read.places)
        terms = query_terms(query, add, subtract, images)
        hits = index.search(terms, k=k, offset=offset, filters=filters,
                            min_score=min_score, relative=relative, relevant=relevant, sort=sort,
                            rerank=rerank, collapse=collapse, all_segments=all_segments)
        # After the search: a query it refuses gets its one-line error, not warnings about it too.
        for warning in index.query_warnings(query, add, subtract):
            click.echo(f"searchlib: warning: {warning}", err=True)
    if emit([h.to_dict() for h in hits], [h.path for h in hits], as_json, as_nl, as_paths, nul):
        if relevant and not hits:
            click.echo("searchlib: nothing relevant found", err=True)
    elif not hits:
        click.echo("nothing relevant found (drop --relevant to see the closest images anyway)" if relevant
                   else "no matching images", err=True)
    else:
        graded = any(h.relevance is not None for h in hits)
        rows = [[str(h.rank), f"{h.score:.3f}"] + ([_relevance_cell(h.relevance)] if graded else [])
                + [date_cell(h.metadata), _path_cell(h) + (f"  (+{len(h.duplicates)} copies)" if h.duplicates else "")]
                for h in hits]
        click.echo(table(["rank", "score"] + (["relevance"] if graded else []) + ["date", "path"], rows))
    exit_now()


def _path_cell(hit) -> str:
    """The hit's path (a video segment's with its time range: ``clip.mp4 @ 0:04–0:08``), and the
    names of its RAW+JPEG siblings (same folder) after it."""
    meta = hit.metadata
    if meta.get("media") == "video":
        return f"{hit.path} @ {clock(meta.get('start') or 0)}–{clock(meta.get('end') or 0)}"
    if not hit.siblings:
        return hit.path
    return f"{hit.path} (+ {', '.join(os.path.basename(s) for s in hit.siblings)})"


def clock(seconds: float) -> str:
    """Seconds as a video player shows them: ``0:04``, ``12:30``, ``1:02:03``."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _relevance_cell(relevance: float | None) -> str:
    if relevance is None:
        return "-"
    return f"{relevance:.2f}"


@click.command("info", short_help="What the index holds: counts, model, index type, sizes.")
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def info_cmd(obj: dict, as_json: bool) -> None:
    """Show what the index holds: image and vector counts, model, index type and its measured recall,
    which text tower answers queries (int8 where its fidelity gate passed) and the gate's figures,
    sizes on disk."""
    with open_from(obj) as index:
        info = index.info()
    if as_json:
        echo_json(info)
        return
    model = info["model"] or {}
    total = sum(info["bytes_on_disk"].values())
    click.echo(f"index:       {clean(info['index'])}")
    if info["catalog"] != os.path.join(info["index"], "catalog.sqlite"):
        click.echo(f"catalog:     {clean(info['catalog'])}")
    if info.get("videos"):
        click.echo(f"items:       {info['images']} ({info['videos']} videos in {info['video_segments']} segments)")
    else:
        click.echo(f"images:      {info['images']}")
    if not model:
        click.echo("model:       - (empty index: add images with 'searchlib index PATH')")
        return
    click.echo(f"vectors:     {info['vectors']} ({info['index_type']}, dim {info['dim']}, "
               f"{info['vector_dtype']} in the catalog)")
    kind = "exact" if info["exact"] else f"approximate, nprobe {info['nprobe']}"
    recall = f"{info['recall_at_10']:.3f}"
    if info.get("rerank"):
        recall += f", {info['recall_at_10_rerank']:.3f} re-ranking the best {info['rerank']} exactly"
    click.echo(f"recall@10:   {recall} ({kind}; requested: {info['index_type_requested']})")
    mem = info["memory"]
    where = "codes on disk, memory-mapped" if info.get("on_disk") else "in memory"
    click.echo(f"memory:      {human_bytes(mem['expected_bytes'])} expected, {where} (budget "
               f"{human_bytes(mem['budget_bytes'])}: {mem['rule']})")
    click.echo(f"model:       {model.get('name', '-')}")
    click.echo(f"text tower:  {_text_tower_line(info.get('text_tower'))}")
    click.echo(f"on disk:     {human_bytes(total)}" + ("  (read-only)" if info["read_only"] else ""))


def _text_tower_line(tower: dict | None) -> str:
    """Which text tower answers queries, and the int8 tower's fidelity gate."""
    if not tower:
        return "-"
    in_use = {"int8": "int8 ONNX", "fp32": "fp32 ONNX", "model": "the full model (no usable ONNX export)"}
    line = in_use.get(tower["in_use"], tower["in_use"])
    if tower.get("tokens"):
        line += {"own": " over each text's own tokens", "context": " over the full context"}.get(tower["tokens"], "")
    gate = tower.get("int8_gate")
    if not gate:
        return line + "; int8 gate: not run (the next 'searchlib index' runs it)"
    agreement = "n/a (under 2 vectors)" if gate["top10_agreement"] is None \
        else f"{gate['top10_agreement']:.3f}" + (f" (top {gate['k']})" if gate["k"] != 10 else "")
    verdict = "passed" if gate["passed"] else f"failed: {gate['reason']}"
    return (f"{line}; int8 gate {verdict} (min cosine {gate['min_cosine']:.4f}, mean {gate['mean_cosine']:.4f}, "
            f"top-10 agreement {agreement}, {gate['probes']} probes, {gate['stored_vectors']} vectors, "
            f"{gate['when']})")


@click.command("list", short_help="List the indexed images with their metadata.")
@index_option
@output_options
@click.pass_obj
def list_cmd(obj: dict, as_json: bool, as_nl: bool, as_paths: bool, nul: bool) -> None:
    """List the indexed images and videos: date taken (EXIF or the video's creation time, else the
    file's time, marked "(file)"), pixel size, file size and path, ordered by path. A video is
    listed once, with its length and how many segments it was cut into."""
    with open_from(obj) as index:
        images = list(index.images())
    from searchlib.records import path_fields

    items = [{**im, **path_fields(im["path"])} for im in images]
    if emit(items, [im["path"] for im in images], as_json, as_nl, as_paths, nul):
        return
    rows = [[date_cell(im), f"{im['width']}x{im['height']}", human_bytes(im["size"]), _listed_path(im)]
            for im in images]
    if rows:
        click.echo(table(["date", "pixels", "size", "path"], rows))
    videos = sum(1 for im in images if im.get("media") == "video")
    click.echo(f"{len(images) - videos} images" + (f", {videos} videos" if videos else ""), err=True)


def _listed_path(entry: dict) -> str:
    if entry.get("media") != "video":
        return entry["path"]
    return f"{entry['path']} (video {clock(entry.get('duration') or 0)}, {entry['segments']} segments)"


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(search_cmd)
    group.add_command(info_cmd)
    group.add_command(list_cmd)
