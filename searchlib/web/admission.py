"""How many API requests the server takes on at once (issue 24 #3): past the limit a request is
answered at once with 503 and ``Retry-After`` instead of joining a queue that grows without end,
and the image decodes of an admitted request wait a bounded time for their share of the decode
memory budget (:data:`searchlib.imaging.decode_wait_limit`), answering 503 the same way after it.

So a flood of 12 MP uploads costs the server its decode budget and a few queued sockets, never
memory in proportion to the flood: the clients are told to come back, and every answer is one the
contract declares. The page's own files (``/``, ``/static``) are never refused: a busy server still
shows its page, and the page says the search is busy.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..imaging import decode_wait_limit
from .middleware import send_json

#: API requests handled at once by default: below Starlette's 40 worker threads, so an admitted
#: request never queues for a thread behind refused ones.
MAX_IN_FLIGHT = 32
#: Seconds an admitted request's decode waits for room in the decode budget by default.
DECODE_WAIT_S = 10.0
#: Seconds a refused client is asked to wait.
RETRY_AFTER_BUSY_S = 1


class Admission:
    """Admit at most ``limit`` API requests at once; refuse the rest with 503 and ``Retry-After``."""

    def __init__(self, app: ASGIApp, limit: int = MAX_IN_FLIGHT, decode_wait: float = DECODE_WAIT_S):
        if limit < 1:
            raise ValueError("the limit must be at least 1")
        self.app, self.limit, self.decode_wait = app, limit, decode_wait
        #: Requests being handled now (one event loop runs this: no lock needed).
        self.in_flight = 0
        #: Requests refused so far (for tests and the soak).
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            self.refused += 1
            return await send_json(send, 503, {"error": f"the server is busy ({self.in_flight} requests at once); "
                                                        f"try again in {RETRY_AFTER_BUSY_S} s"},
                                   close=scope["method"] not in ("GET", "HEAD"),
                                   headers={"Retry-After": str(RETRY_AFTER_BUSY_S)})
        self.in_flight += 1
        # Copied into the worker thread that runs the route (Starlette runs sync routes with the
        # request's context), so the decodes of this request, and only they, wait a bounded time.
        token = decode_wait_limit.set(self.decode_wait)
        try:
            await self.app(scope, receive, send)
        finally:
            decode_wait_limit.reset(token)
            self.in_flight -= 1
