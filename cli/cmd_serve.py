"""``searchlib serve``: the web page and the HTTP API over one index."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading

import click

from .cmd_watch import POLL_DEFAULT
from .common import index_option

#: An origin as browsers send it: a scheme, a host, maybe a port; no path, no '*'.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


@click.command("serve", short_help="A web page and an HTTP API over the index.")
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--token", envvar="SEARCHLIB_TOKEN", metavar="TOKEN",
              help="Require this token on every request (Authorization: Bearer TOKEN, or ?token= once in the "
                   "browser). Env SEARCHLIB_TOKEN.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model runs when a query needs it (image uploads).")
@click.option("--max-upload-mb", type=click.IntRange(1, 1024), default=20, show_default=True,
              help="Largest image upload accepted; a larger request is refused before it is read.")
@click.option("--max-requests", type=click.IntRange(1, 10_000), default=32, show_default=True, metavar="N",
              help="API requests handled at once; more are answered 503 with Retry-After (so a flood of "
                   "uploads is told to come back instead of piling up).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this host name (say, the name a reverse proxy or your LAN "
                   "uses; '*' for any). Repeatable. Without it, only loopback names (localhost, "
                   "127.0.0.1, [::1]) are answered unless --token is given, against DNS rebinding.")
@click.option("--watch", "watch_paths", multiple=True, type=click.Path(path_type=str), metavar="PATH",
              help="Also keep the index in step with PATH while serving, as 'searchlib watch PATH' does "
                   "(repeatable): new photos appear on the next search.")
@click.option("--poll", type=click.FloatRange(min=0, min_open=True), is_flag=False, flag_value=POLL_DEFAULT,
              default=None, metavar="[SECONDS]", help="With --watch: poll instead of following file events.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="With --watch: skip paths or names matching GLOB.")
@click.option("--cors", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Let pages of this origin (scheme://host[:port], e.g. https://app.example) call the API from "
                   "a browser. Repeatable. Off by default: no other site can read an answer.")
@click.pass_obj
def serve_cmd(obj: dict, host: str, port: int, token: str | None, device: str, max_upload_mb: int,
              max_requests: int, allowed_hosts: tuple[str, ...], watch_paths: tuple[str, ...], poll: float | None,
              exclude: tuple[str, ...], cors_origins: tuple[str, ...]) -> None:
    """Serve a web page (search box, thumbnail grid, "more like this", drop an image to search by it)
    and a JSON API under /api/v1 (OpenAPI docs at /docs) for the index. Nothing served changes the
    index (--watch indexes beside it, as 'searchlib watch' would). Stops cleanly on Ctrl-C.

    \b
    The page's URL reflects the search (/?q=a+red+circle), so it can be bookmarked.
    Photos that 'searchlib index' (or --watch) adds meanwhile appear without a restart.
    """
    if not _is_loopback(host) and not token:
        raise click.UsageError(f"--host {host} is reachable from other machines: give --token TOKEN (or set "
                               "SEARCHLIB_TOKEN) so that only you can see your photos")
    if (poll is not None or exclude) and not watch_paths:
        raise click.UsageError("--poll and --exclude go with --watch PATH")
    from searchlib.web.middleware import host_name

    bad = [name for name in allowed_hosts if name != "*" and host_name(name) is None]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not a host name", param_hint="--allowed-host")
    bad = [origin for origin in cors_origins if not _ORIGIN.fullmatch(origin)]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not an origin; give scheme://host[:port], e.g. "
                                 "https://app.example", param_hint="--cors")
    watcher = _WatchThread(obj, watch_paths, poll, exclude, device) if watch_paths else None
    try:
        _serve(obj, host, port, token, device, max_upload_mb, max_requests, allowed_hosts, cors_origins)
    finally:
        if watcher is not None:
            watcher.stop()
    click.echo("searchlib: stopped", err=True)


class _WatchThread:
    """The watcher beside the server, in this process: one model for both, one thing to stop.

    It starts before the server and the server starts only once the watcher holds the index (a
    second watcher is refused with its message, exit 1). Stopping commits what is done."""

    def __init__(self, obj: dict, paths: tuple[str, ...], poll: float | None, exclude: tuple[str, ...],
                 device: str):
        from searchlib.indexer import IndexOptions

        self.stop_event = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None
        options = IndexOptions(catalog=obj.get("catalog"), exclude=exclude, device=device)
        self.thread = threading.Thread(target=self._run, args=(obj["index_dir"], paths, options, poll),
                                       name="searchlib-watch", daemon=True)
        self.thread.start()
        self.started.wait()
        if self.error is not None:
            raise self.error

    def _run(self, index_dir: str, paths: tuple[str, ...], options, poll: float | None) -> None:
        from searchlib.indexer.watch import watch

        def notice(line: str) -> None:
            click.echo(f"searchlib: {line}", err=True)
            self.started.set()

        def batch(b) -> None:
            if b.changes:
                click.echo(f"searchlib: indexed {b.added} new, {b.updated} updated, {b.moved} moved, {b.removed} "
                           f"removed, {b.failed} failed in {b.seconds:.1f}s", err=True)

        try:
            watch(index_dir, *paths, options=options, on_batch=batch, on_notice=notice, stop=self.stop_event,
                  poll=poll)
        except BaseException as e:  # before the server starts: raised there; later: said here
            self.error = e
            if self.started.is_set():
                click.echo(f"searchlib: watching stopped: {' '.join(str(e).split())}", err=True)
        finally:
            self.started.set()

    def stop(self) -> None:
        """Commit what the watcher has done and wait for it."""
        self.stop_event.set()
        self.thread.join()


def _serve(obj: dict, host: str, port: int, token: str | None, device: str, max_upload_mb: int, max_requests: int,
           allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...]) -> None:
    import uvicorn

    from searchlib.web import create_app

    app = create_app(obj["index_dir"], catalog=obj.get("catalog"), token=token, device=device,
                     max_upload=max_upload_mb << 20, allowed_hosts=list(allowed_hosts), cors_origins=cors_origins,
                     max_in_flight=max_requests)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host

    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets)
        bound = port
        for srv in getattr(server, "servers", []):
            for sock in srv.sockets:
                bound = sock.getsockname()[1]
        suffix = f"/?token={token}" if token else "/"
        click.echo(f"serving {obj['index_dir']} at http://{shown}:{bound}{suffix}  (Ctrl-C stops)")

    server.startup = startup
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly
        pass


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(serve_cmd)
