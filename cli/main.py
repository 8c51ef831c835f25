"""The ``searchlib`` command group, global options and the one place errors become exit codes."""

from __future__ import annotations

import logging
import os
import sys

import click

from searchlib.config import CATALOG_ENV, INDEX_ENV, default_index_dir
from searchlib.errors import SearchlibError

from .common import enable_fast_exit


def _quiet_broken_pipe() -> None:
    """The reader of our output went away (``searchlib list | head``): stop quietly, as Unix tools
    do. Further writes (and the final flush) go to /dev/null instead of raising again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def _stdout_gone() -> bool:
    """Whether our standard output is a pipe whose reader has gone (so a BrokenPipeError was
    about it, and not about a pipe to one of our own helper processes)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (tests, embedding): assume so
        return True


#: The module that defines each command. A command line imports only its own command's module (a
#: cold search then skips the definitions of every other command, ~30 ms on 2 cores); --help, and
#: :func:`load_all_commands`, import them all. A test checks this map against the modules.
COMMAND_MODULES = {"index": "cmd_index", "search": "cmd_search", "info": "cmd_search", "list": "cmd_search",
                   "serve": "cmd_serve", "verify": "cmd_verify", "models": "cmd_models",
                   "classify": "cmd_analysis", "tag": "cmd_analysis", "duplicates": "cmd_analysis",
                   "export": "cmd_analysis", "embed-text": "cmd_analysis", "demo": "cmd_demo",
                   "train": "cmd_train", "evaluate": "cmd_train", "watch": "cmd_watch"}


class SearchlibGroup(click.Group):
    """Turns library errors into one line on stderr and exit code 1 (usage errors stay 2); loads
    each command's module when that command is asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            _register(module)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_all_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SearchlibError as e:
            raise click.ClickException(_one_line(str(e))) from e
        except BrokenPipeError as e:
            if not _stdout_gone():  # a pipe to a worker broke: an error, never a silent success
                raise click.ClickException(f"a pipe to a helper process broke ({e}); nothing committed was "
                                           "lost, run the command again") from e
            _quiet_broken_pipe()
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("searchlib: interrupted; work committed so far is kept", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except MemoryError:
            raise click.ClickException("out of memory; try a smaller --batch-size") from None
        except OSError as e:
            if os.environ.get("SEARCHLIB_DEBUG"):
                raise
            where = f" ({e.filename})" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}; check the path and its permissions "
                                       "(SEARCHLIB_DEBUG=1 shows details)") from e
        except Exception as e:
            if os.environ.get("SEARCHLIB_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected error ({type(e).__name__}: {_one_line(str(e))}); rerun with SEARCHLIB_DEBUG=1 for "
                "details and report it"
            ) from e


def _one_line(text: str) -> str:
    return " ".join(text.split())


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=SearchlibGroup, context_settings=CONTEXT)
@click.option("--index", "index_dir", type=click.Path(file_okay=False), envvar=INDEX_ENV,
              help=f"Index directory (env {INDEX_ENV}; default: {default_index_dir()}).")
@click.option("--catalog", "catalog", metavar="URL", envvar=CATALOG_ENV,
              help=f"Catalog database URL, e.g. postgresql://user@host/db (env {CATALOG_ENV}; default: "
                   "SQLite in the index directory). With a URL, --index is this machine's cache directory.")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) on stderr.")
@click.version_option(package_name="searchlib", prog_name="searchlib")
@click.pass_context
def main(ctx: click.Context, index_dir: str | None, catalog: str | None, verbose: int) -> None:
    """Search your images by what is in them, using CLIP.

    \b
      searchlib index ~/Pictures          # embed every image (incremental)
      searchlib search "a dog on a beach"  # best matches first
      searchlib serve                      # a web page and an HTTP API
      searchlib info                       # what the index holds
    """
    for stream in (sys.stdout, sys.stderr):
        # Human output escapes bad bytes itself; this keeps any other write from failing.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="searchlib: %(message)s", stream=sys.stderr)
    if verbose == 0:
        # open_clip and huggingface log routine notices at WARNING; keep the terminal for real problems.
        for noisy in ("root", "huggingface_hub", "open_clip", "transformers"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger("searchlib").setLevel(logging.ERROR)
    ctx.obj = {"index_dir": index_dir or str(default_index_dir()), "catalog": catalog}


def run() -> None:
    """The console script: ``main`` with a quick exit after queries (see :func:`exit_now`)."""
    enable_fast_exit()
    try:
        main()
    except BrokenPipeError:  # raised while click itself wrote (e.g. --help | head)
        _quiet_broken_pipe()
        sys.exit(0)


_registered: set[str] = set()


def _register(module: str) -> None:
    """Attach the commands of ``cli/<module>.py`` to ``main`` (each module names its own in ``register``)."""
    if module not in _registered:
        import importlib

        importlib.import_module(f"{__package__}.{module}").register(main)
        _registered.add(module)


def load_all_commands() -> None:
    """Attach every command to ``main`` (for --help, documentation and tests)."""
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        _register(module)
