"""``searchlib models``: which models can be used, and which work offline."""

from __future__ import annotations

import click

from .output import echo_json, table


@click.command("models", short_help="Known models, and which work offline.")
@click.option("--all", "include_all", is_flag=True,
              help="List every open_clip pretrained model, not just the recommended ones.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {name, available_offline, note, languages}.")
def models_cmd(include_all: bool, as_json: bool) -> None:
    """List models usable with 'searchlib index --model SPEC'.

    'bundled' ships with searchlib and always works offline. ARCH/TAG models come from open_clip
    and are downloaded once into its cache; 'available_offline' says whether that already happened.
    'languages' says what queries a model reads: most read English only; xlm-roberta, nllb and
    i18n models read many languages.
    """
    from searchlib.models import list_models

    rows = list_models(include_all=include_all)
    if as_json:
        echo_json([r.__dict__ for r in rows])
        return
    click.echo(table(["model", "offline", "languages", "note"],
                     [[r.name, "yes" if r.available_offline else "no", r.languages, r.note] for r in rows], flex=3))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(models_cmd)
