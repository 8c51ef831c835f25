"""``searchlib demo``: see searchlib work offline in under a minute."""

from __future__ import annotations

import shlex

import click

from .output import echo_json


@click.command("demo", short_help="Sample photos, indexed offline and searched.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="searchlib-demo", show_default=True,
              help="Where the sample photos (DIR/photos) and their index (DIR/index) go.")
@click.option("--count", type=click.IntRange(min=10, max=5000), default=200, show_default=True,
              help="How many sample photos to generate.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=3, show_default=True, help="Hits per query.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the queries and hits as JSON.")
def demo_cmd(directory: str, count: int, k: int, device: str, as_json: bool) -> None:
    """Generate sample photos, index them with the bundled model and run example queries.

    Works offline. The photos are drawn shapes and objects (circles, stars, houses, cars, ...) in
    many colors; each hit is shown with the caption the photo was generated from, so you can judge
    the results. One query is in Chinese, and one has no answer in the folder (--relevant then
    returns nothing). Re-running reuses the index.
    """
    from searchlib.indexer.demo import run_demo

    result = run_demo(directory, count=count, k=k, device=device)
    if as_json:
        echo_json({"folder": str(result.folder), "index": str(result.index_dir), "report": result.report.to_dict(),
                   "queries": [{"query": q, "hits": [{**h.to_dict(), "true_caption": c} for h, c in hits]}
                               for q, hits in result.results],
                   "relevant_only": {"query": result.nothing_query,
                                     "hits": [h.to_dict() for h in result.nothing_kept]}})
        return
    r = result.report
    click.echo(f"Generated {count} photos in {result.folder}")
    click.echo(f"Indexed with the bundled model: {r.added} new, {r.unchanged} unchanged, "
               f"{r.failed} failed ({r.seconds:.1f}s)\n")
    for query, hits in result.results:
        click.echo(f'search "{query}"')
        for hit, caption in hits:
            relevance = f"  relevance {hit.relevance:.2f}" if hit.relevance is not None else ""
            click.echo(f"  {hit.rank}. {hit.score:.3f}{relevance}  {hit.path.rsplit('/', 1)[-1]:<13} "
                       f"(drawn as: {caption})")
        click.echo("")
    best = result.nothing_best
    click.echo(f'search "{result.nothing_query}" --relevant      (no cat was drawn)')
    if result.nothing_kept:
        click.echo(f"  kept {len(result.nothing_kept)} hits judged relevant")
    elif best is not None:
        click.echo(f"  nothing relevant found (closest image: score {best.score:.3f}, relevance "
                   f"{best.relevance:.2f}; scores alone do not say that nothing matched)")
    click.echo("")
    idx = shlex.quote(str(result.index_dir))
    click.echo("Try next:")
    click.echo(f'  searchlib --index {idx} search "an orange flower"')
    click.echo(f'  searchlib --index {idx} search "一朵橙色的花" --relevant')
    click.echo(f"  searchlib --index {idx} serve                 # the same photos in your browser")
    click.echo(f"  searchlib --index {idx} info")
    click.echo(f"  searchlib --index {idx} list")
    click.echo("  searchlib index ~/Pictures                     # your photos (default model; downloads once)")


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(demo_cmd)
