"""What the commands share: the ``--index``/``--catalog`` options after a command's name, opening
the index the command line names, and the quick exit of one-shot queries."""

from __future__ import annotations

import os
import sys

import click

_state = {"fast_exit": False}


def index_option(command):
    """Accept ``--index DIR`` and ``--catalog URL`` after the command name too."""

    def override(key: str):
        def callback(ctx: click.Context, _param, value: str | None) -> None:
            if value:
                ctx.ensure_object(dict)[key] = value
        return callback

    command = click.option("--catalog", "catalog_override", metavar="URL", expose_value=False,
                           callback=override("catalog"), help="Catalog database URL (the same as the global "
                           "--catalog).")(command)
    return click.option("--index", "index_dir_override", type=click.Path(file_okay=False), expose_value=False,
                        callback=override("index_dir"), help="Index directory (the same as the global "
                        "--index).")(command)


def open_from(obj: dict, device: str = "auto"):
    """Open the index the command line names."""
    from searchlib import open_index

    return open_index(obj["index_dir"], device=device, catalog=obj.get("catalog"))


def enable_fast_exit() -> None:
    """Let :func:`exit_now` end the process (the console script does; tests and embedders don't)."""
    _state["fast_exit"] = True


def exit_now() -> None:
    """End a read-only command at once once its output is written.

    Tearing down the interpreter (freeing the model session, the mapped index, every module) takes
    ~150 ms that a one-shot query does not need; nothing is left to write. Only the console
    script does this; tests and embedding callers invoke ``main`` and return normally.
    """
    if _state["fast_exit"]:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        try:
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(0)
