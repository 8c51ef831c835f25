"""Headers that make a browser hold the page to what it is (issue 24 #5), and OPTIONS answered.

The page loads only its own files: its script, its stylesheet, thumbnails by URL, and images the
user drops (``blob:``) or the favicon (``data:``). A Content-Security-Policy that says exactly that
means a hostile file name or caption that slipped into the page as markup could still not run a
script, load one from elsewhere, or send what it read anywhere. Every answer also carries
``X-Content-Type-Options: nosniff`` (a served file is never run as what it is not) and
``Referrer-Policy: no-referrer`` (a ``?token=`` URL never leaks to another site).

Cross-origin reads stay off unless ``serve --cors ORIGIN`` opens them for that origin (Starlette's
CORS middleware then answers the preflights). Without it an ``OPTIONS`` request is answered 204 with
the ``Allow`` of its path, and no ``Access-Control-*`` header ever goes out.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import allowed_methods

#: What the page may load: only its own origin; images also from ``blob:`` (a dropped file's
#: preview) and ``data:`` (the empty favicon). No plugins, no <base>, no framing by another site.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """Add :data:`CSP` (unless a route set its own) and :data:`HEADERS` to every answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [(k, v) for k, v in HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class Options:
    """``OPTIONS`` on a path answers 204 with the methods the path answers (or 404 where there is no
    such path); a CORS preflight from an allowed origin never gets here (the CORS middleware sits
    outside and answers it)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            return await self.app(scope, receive, send)
        allow = allowed_methods(scope["app"], scope["path"])
        if not allow:
            return await self.app(scope, receive, send)  # the usual JSON 404
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", allow.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
