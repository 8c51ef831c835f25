"""``classify``, ``tag``, ``duplicates``, ``export`` and ``embed-text``: CLIP's other uses."""

from __future__ import annotations

import click

from searchlib.query import DUPLICATE_THRESHOLD

from .common import index_option, open_from
from .output import clean, echo_json, table

_open = open_from


@click.command("classify", short_help="Zero-shot classify images into --labels.")
@index_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--labels", required=True, metavar="A,B,...", help="Comma-separated class names, e.g. 'cat,dog,car'.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array: per image path, label (the best) and scores (probability per label).")
@click.pass_obj
def classify_cmd(obj: dict, paths: tuple[str, ...], labels: str, as_json: bool) -> None:
    """Zero-shot classify images PATH... into --labels with the index's model.

    Each label becomes prompts ("a photo of a {label}.", "a picture of a {label}.", ...) whose
    embeddings are averaged; the label closest to the image wins. Scores are softmax(100 x cosine)
    over the labels. Indexed images reuse their stored vectors.
    """
    from searchlib.analysis import classify, parse_labels

    with _open(obj) as index:
        results = classify(index, paths, parse_labels(labels))
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    click.echo(table(["label", "prob", "path"],
                     [[r.label, f"{r.scores[r.label]:.2f}", r.path] for r in results]))


@click.command("tag", short_help="Store each indexed image's best label from --labels.")
@index_option
@click.option("--labels", required=True, metavar="A,B,...", help="Comma-separated labels to choose from.")
@click.option("--min-prob", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Only tag images whose best label has at least this probability.")
@click.option("--json", "as_json", is_flag=True, help="Print {label: count} as JSON.")
@click.pass_obj
def tag_cmd(obj: dict, labels: str, min_prob: float, as_json: bool) -> None:
    """Tag every indexed image with its best label from --labels (zero-shot).

    Tags are stored in the catalog; 'searchlib search --tag LABEL' then filters on them. Running
    again with the same labels replaces their tags.
    """
    from searchlib.analysis import parse_labels, tag_index

    with _open(obj) as index:
        counts = tag_index(index, parse_labels(labels), min_prob)
    if as_json:
        echo_json(counts)
        return
    click.echo(table(["label", "images"], [[k, str(v)] for k, v in counts.items()], flex=0))


@click.command("duplicates", short_help="Groups of near-identical images.")
@index_option
@click.option("--threshold", type=click.FloatRange(0.5, 1), default=DUPLICATE_THRESHOLD, show_default=True,
              help="Cosine similarity at or above which two images count as near-duplicates.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of groups, each a list of {id, path, score}.")
@click.pass_obj
def duplicates_cmd(obj: dict, threshold: float, as_json: bool) -> None:
    """Find groups of near-identical images (re-encoded, resized, cropped or brightened copies).

    Uses the vector index's range search; groups join transitively, largest first.
    """
    from searchlib.analysis import near_duplicates

    with _open(obj) as index:
        groups = near_duplicates(index, threshold)
    if as_json:
        echo_json(groups)
        return
    for n, group in enumerate(groups, 1):
        click.echo(f"group {n} ({len(group)} images)")
        for member in group:
            click.echo(f"  {member['score']:.3f}  {clean(member['path'])}")
    click.echo(f"{len(groups)} groups", err=True)


@click.command("export", short_help="Write all vectors with ids and paths (.npy, .parquet).")
@index_option
@click.argument("target", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_obj
def export_cmd(obj: dict, target: str, as_json: bool) -> None:
    """Write all vectors with their ids and paths to TARGET (.npy or .parquet).

    A .npy file holds the (n, dim) float32 vectors; TARGET with .ids.json holds the aligned ids,
    paths and the model. A .parquet file (needs pyarrow) holds id, path and vector columns.
    """
    from searchlib.analysis import export_embeddings

    with _open(obj) as index:
        result = export_embeddings(index, target)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"wrote {result['count']} vectors (dim {result['dim']}) to {clean(result['path'])}")


@click.command("embed-text", short_help="Text embeddings in the index's vector space.")
@index_option
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {text, vector}.")
@click.pass_obj
def embed_text_cmd(obj: dict, texts: tuple[str, ...], as_json: bool) -> None:
    """Print the index model's normalized embedding of each TEXT (for use in other models)."""
    with _open(obj) as index:
        vectors = index.embed_texts(list(texts))
    if as_json:
        echo_json([{"text": t, "vector": [round(float(x), 7) for x in v]} for t, v in zip(texts, vectors)])
        return
    for t, v in zip(texts, vectors):
        click.echo(f"{t}\t" + " ".join(f"{x:.6f}" for x in v))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(classify_cmd)
    group.add_command(tag_cmd)
    group.add_command(duplicates_cmd)
    group.add_command(export_cmd)
    group.add_command(embed_text_cmd)
