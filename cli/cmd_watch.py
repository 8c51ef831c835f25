"""``searchlib watch``: keep the index in step with folders that change, until stopped."""

from __future__ import annotations

import signal
import sys
import threading
import time

import click

from .cmd_index import run_options
from .common import index_option
from .output import clean, echo_lines

#: Shown with --poll alone; the library's default (kept here so --help needs no heavy import).
POLL_DEFAULT = 10.0


class _Status:
    """Human output: a status line in a terminal, else one line per batch (e.g. in a journal)."""

    def __init__(self, quiet: bool, batches: bool):
        self.quiet, self.batches = quiet, batches
        self.tty = sys.stderr.isatty()
        self.totals = {"added": 0, "updated": 0, "removed": 0, "moved": 0, "failed": 0}
        self.drawn = False

    def notice(self, line: str) -> None:
        if not self.quiet:
            self._clear()
            click.echo(f"searchlib: {line}", err=True)

    def batch(self, batch) -> None:
        if self.quiet or not self.batches:
            return
        for failure in batch.failures[:20]:
            self._clear()
            click.echo(f"skipped {clean(failure['path'])}: {failure['error']}", err=True)
        for key in self.totals:
            self.totals[key] += getattr(batch, key)
        what = "caught up" if batch.catch_up else "indexed"
        line = (f"{what}: {batch.added} new, {batch.updated} updated, {batch.moved} moved, {batch.removed} "
                f"removed, {batch.failed} failed in {batch.seconds:.1f}s")
        if not self.tty:
            click.echo(line, err=True)
            return
        t = self.totals
        self._clear()
        click.echo(f"\r{time.strftime('%H:%M:%S')} {line}; since start +{t['added']} ~{t['updated']} "
                   f"->{t['moved']} -{t['removed']} !{t['failed']}; watching (Ctrl-C stops)", err=True, nl=False)
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            click.echo("\r\033[K", err=True, nl=False)
            self.drawn = False

    def close(self) -> None:
        if self.drawn:
            click.echo("", err=True)
            self.drawn = False


def _stop_on_signals(stop: threading.Event) -> dict:
    """SIGINT and SIGTERM ask the watcher to commit and stop; a second Ctrl-C interrupts at once.
    Returns the handlers they had, to put back."""

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


@click.command("watch", short_help="Keep the index in step with folders that change (runs until stopped).")
@index_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@run_options
@click.option("--poll", type=click.FloatRange(min=0, min_open=True), is_flag=False, flag_value=POLL_DEFAULT,
              default=None, metavar="[SECONDS]",
              help=f"Poll the folders every SECONDS (alone: {POLL_DEFAULT:g}) instead of following file events. "
                   "Network and FUSE mounts (NFS, CIFS/SMB, sshfs) are polled anyway.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=POLL_DEFAULT,
              show_default=True, metavar="SECONDS",
              help="How often folders that events can't see (network mounts, folders past the watch limit) "
                   "are polled.")
@click.option("--debounce", type=click.FloatRange(min=0.05, max=600), default=1.0, show_default=True,
              metavar="SECONDS", help="A file is read once nothing has written to it for this long.")
@click.option("--max-watches", type=click.IntRange(min=1), metavar="N",
              help="Follow at most N folders by events (default: as many as fs.inotify.max_user_watches "
                   "allows); the rest is polled.")
@click.option("--retry-for", type=click.FloatRange(min=0), default=600, show_default=True, metavar="SECONDS",
              help="When the catalog fails in a way that passes (its database unreachable, SQLite locked by "
                   "another program, the disk full), say so and try again (waits doubling from 1 s to 60 s) "
                   "for up to this long before giving up; 0 gives up at once.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per committed batch (added, updated, removed, moved, failed, seconds, "
                   "catch_up, failures), one per line.")
@click.option("--nl", "as_nl", is_flag=True, help="The same as --json (JSON lines).")
@click.option("-q", "--quiet", is_flag=True, help="No status line, notices or per-batch lines.")
@click.pass_obj
def watch_cmd(obj: dict, paths: tuple[str, ...], poll: float | None, poll_interval: float, debounce: float,
              max_watches: int | None, retry_for: float,
              as_json: bool, as_nl: bool, quiet: bool, **run_values) -> None:
    """Watch PATH... and keep the index in step: new, changed, deleted, renamed and moved files and
    folders, until Ctrl-C or SIGTERM (which commit what is done and exit 0).

    \b
    It first catches up like 'searchlib index' (what changed while nobody watched), then
    follows file events (inotify), polling where events can't see changes. A file still
    being copied or written is read once, when it has been still for --debounce seconds.
    One watcher per index: a second one (or an index run) is refused while it runs.
    """
    from searchlib.indexer import IndexOptions
    from searchlib.indexer.watch import watch

    if not paths:
        raise click.UsageError("give the folders to watch, e.g. 'searchlib watch ~/Pictures'")
    options = IndexOptions(catalog=obj.get("catalog"), **run_values)
    machine = as_json or as_nl
    status = _Status(quiet, batches=not machine)

    def on_batch(batch) -> None:
        if machine:
            echo_lines([batch.to_dict()])
            sys.stdout.flush()
        status.batch(batch)

    stop = threading.Event()
    before = _stop_on_signals(stop)
    try:
        watch(obj["index_dir"], *paths, options=options, on_batch=on_batch, on_notice=status.notice, stop=stop,
              poll=poll, poll_seconds=poll_interval, debounce=debounce, max_watches=max_watches,
              retry_for=retry_for)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        status.close()
    if not quiet:
        click.echo("searchlib: stopped; everything indexed is committed", err=True)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(watch_cmd)
