"""What every request passes before a route (plain ASGI, so they cost a function call, not a task):
the Host check, the body size limit, and HEAD answered as GET without a body."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Set in the scope of a HEAD request that routes see as a GET (so a file route sends no bytes).
HEAD_FLAG = "searchlib.head"
#: Room for the form fields and multipart framing around an upload of the largest allowed size.
FORM_ALLOWANCE = 1 << 20
_NAME = re.compile(r"^[a-z0-9_.-]+$")


async def send_json(send: Send, status: int, body: dict, close: bool = False,
                    headers: dict[str, str] | None = None) -> None:
    """Answer with JSON from a middleware (``headers``: more to send, e.g. ``Retry-After``)."""
    data = json.dumps(body).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    sent = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
    if close:  # the body was not read: the connection cannot carry another request
        sent.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": data})


def host_name(header: str) -> str | None:
    """The host name of a ``Host`` header, lower-case, without the port or a final dot; None if it
    is not a host name or an IP literal."""
    header = header.strip().lower()
    if header.startswith("["):  # [IPv6]:port
        inside, sep, rest = header[1:].partition("]")
        if not sep or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        try:
            return f"[{ipaddress.IPv6Address(inside).compressed}]"
        except ValueError:
            return None
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    name = name.rstrip(".")
    return name if name and _NAME.match(name) else None


def is_loopback_name(name: str) -> bool:
    """``localhost``, ``*.localhost`` (browsers resolve these to loopback themselves, RFC 6761),
    127.0.0.0/8 or ``[::1]``: names a DNS-rebinding page cannot have."""
    if name == "localhost" or name.endswith(".localhost") or name == "[::1]":
        return True
    try:
        return ipaddress.IPv4Address(name).is_loopback
    except ValueError:
        return False


class HostCheck:
    """Serve only requests whose ``Host`` is a loopback name or one of ``allowed``: a page on
    another origin that rebinds its DNS name to 127.0.0.1 sends its own name, and gets a 421."""

    def __init__(self, app: ASGIApp, allowed: Collection[str] = ()):
        self.app = app
        self.allowed = {n for n in (host_name(a) for a in allowed) if n}
        self.any = "*" in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        given = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
        name = host_name(given[0]) if len(given) == 1 else None
        if name is None:
            return await send_json(send, 400, {"error": "the request has no valid Host header; ask for this server "
                                                        "by a loopback name, or one allowed with --allowed-host"})
        if not (is_loopback_name(name) or name in self.allowed):
            return await send_json(send, 421, {"error": f"this server does not answer to the name {name!r}; start it "
                                                        f"with --allowed-host {name} to allow it"})
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """A request body went past the limit (raised inside ``receive``)."""


class BodyLimit:
    """Refuse a request body larger than ``limit`` bytes: by its ``Content-Length`` before reading
    any of it, and, for a chunked body, by stopping reading as soon as it passes the limit (so a
    hostile page cannot fill the disk with a "simple" POST to localhost)."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int):
        self.app, self.limit = app, limit
        self.message = f"the upload is larger than {upload_limit // (1 << 20)} MiB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.strip().isdigit() or int(length) > self.limit):
            return await send_json(send, 413, {"error": self.message}, close=True)
        read = 0
        cut = started = False

        async def limited() -> Message:
            nonlocal read, cut
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.limit:
                    cut = True
                    raise BodyTooLarge(self.message)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if cut and not started:  # whatever the app makes of a cut-off body, the answer is a 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except BodyTooLarge:
            pass
        if cut and not started:
            await send_json(send, 413, {"error": self.message}, close=True)


class HeadAsGet:
    """HEAD works wherever GET does: the route runs as for GET (same status and headers) and the
    body is dropped. Routes that stream files look at :data:`HEAD_FLAG` and skip reading them."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_FLAG: True}, receive, headers_only)
