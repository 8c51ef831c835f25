"""The ``searchlib`` command group, global options and the one place errors become exit codes."""

from __future__ import annotations

import logging
import os
import sys

import click

from searchlib.config import INDEX_ENV, default_index_dir
from searchlib.errors import SearchlibError


class SearchlibGroup(click.Group):
    """Turns library errors into one line on stderr and exit code 1 (usage errors stay 2)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SearchlibError as e:
            raise click.ClickException(str(e)) from e
        except KeyboardInterrupt:
            click.echo("searchlib: interrupted; work committed so far is kept", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except MemoryError:
            raise click.ClickException("out of memory; try a smaller --batch-size") from None
        except Exception as e:
            if os.environ.get("SEARCHLIB_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected error ({type(e).__name__}: {e}); rerun with SEARCHLIB_DEBUG=1 for details "
                "and report it"
            ) from e


@click.group(cls=SearchlibGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--index", "index_dir", type=click.Path(file_okay=False), envvar=INDEX_ENV,
              help=f"Index directory (env {INDEX_ENV}; default: a per-user data directory).")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) on stderr.")
@click.version_option(package_name="searchlib", prog_name="searchlib")
@click.pass_context
def main(ctx: click.Context, index_dir: str | None, verbose: int) -> None:
    """Search your images by what is in them, using CLIP.

    \b
      searchlib index ~/Pictures          # embed every image (incremental)
      searchlib search "a dog on a beach"  # best matches first
      searchlib info                       # what the index holds
    """
    for stream in (sys.stdout, sys.stderr):
        # File names that are not valid UTF-8 print as their original bytes, as ls does.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="searchlib: %(message)s", stream=sys.stderr)
    if verbose == 0:
        # open_clip and huggingface log routine notices at WARNING; keep the terminal for real problems.
        for noisy in ("root", "huggingface_hub", "open_clip"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger("searchlib").setLevel(logging.ERROR)
    ctx.obj = {"index_dir": index_dir or str(default_index_dir())}


def index_option(command):
    """Accept ``--index DIR`` after the command name too (``searchlib search --index DIR cat``)."""

    def override(ctx: click.Context, _param, value: str | None) -> None:
        if value:
            ctx.ensure_object(dict)["index_dir"] = value

    return click.option("--index", "index_dir_override", type=click.Path(file_okay=False), expose_value=False,
                        callback=override, help="Index directory (the same as the global --index).")(command)


_state = {"fast_exit": False}


def run() -> None:
    """The console script: ``main`` with a quick exit after queries (see :func:`exit_now`)."""
    _state["fast_exit"] = True
    main()


def exit_now() -> None:
    """End a read-only command at once once its output is written.

    Tearing down the interpreter (freeing the model session, the mapped index, every module) takes
    ~150 ms that a one-shot query does not need; nothing is left to write. Only the console
    script does this; tests and embedding callers invoke ``main`` and return normally.
    """
    if _state["fast_exit"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _register() -> None:
    from . import (  # noqa: F401  (commands attach to ``main``)
        cmd_analysis,
        cmd_demo,
        cmd_index,
        cmd_models,
        cmd_search,
        cmd_train,
        cmd_verify,
    )


_register()
