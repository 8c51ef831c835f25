"""How the server answers a failure: always JSON ``{"error": "..."}`` with a fitting status code,
never a stack trace."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount, Route

from ..errors import (
    CatalogUnavailableError,
    ConfigError,
    DecodeBusyError,
    ImageDecodeError,
    ImageNotFoundError,
    IndexBusyError,
    IndexCorruptError,
    IndexNotFoundError,
    ModelError,
    QueryError,
    SearchlibError,
)

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait when the catalog's database is unreachable.
RETRY_AFTER_S = 5


#: What to write instead, for a parameter whose value does not match its schema pattern.
PATTERN_HELP = {"q": "say what to look for, e.g. 'a dog on a beach'",
                "after": "use a real date as YYYY, YYYY-MM or YYYY-MM-DD", "before": "use a real date as YYYY, "
                "YYYY-MM or YYYY-MM-DD", "near": "use LAT,LON in degrees, e.g. 38.72,-9.14",
                "ids": "ids must be comma-separated integers, e.g. 1,2,3"}


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def status_of(error: SearchlibError) -> int:
    """The HTTP status a library error is answered with."""
    if isinstance(error, (IndexNotFoundError, ImageNotFoundError)):
        return 404
    if isinstance(error, (QueryError, ConfigError, ImageDecodeError)):
        return 400
    if isinstance(error, (IndexBusyError, CatalogUnavailableError, DecodeBusyError)):
        return 503
    if isinstance(error, (IndexCorruptError, ModelError)):
        return 500
    return 500


#: A database URL in any spelling (SQLAlchemy rewrites the driver part when it renders one).
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://", re.IGNORECASE)


#: Options of the CLI that are parameters of the API under the same name (``-`` as ``_``): a library
#: message that names one says it the CLI's way, and an API client reads the parameter's name.
_SHARED_OPTIONS = re.compile(r"(?<![\w-])--(near|within|relevant|min-score|relative|labels|threshold|text|place|"
                             r"media|after|before|offset|sort|collapse)\b")


def in_api_words(text: str) -> str:
    """``text`` with the CLI options that are API parameters named as the parameters (``--min-score``
    becomes ``min_score``); advice about other commands keeps its options."""
    return _SHARED_OPTIONS.sub(lambda m: m.group(1).replace("-", "_"), text)


def public_message(text: str, hidden: Sequence[str]) -> str:
    """``text`` on one line, as an HTTP client may see it: a message that names the catalog (one of
    ``hidden``, or any database URL) says only that the catalog failed; the server's log has it all."""
    if _URL.search(text) or any(secret in text for secret in hidden):
        log.warning("catalog error (not shown to HTTP clients): %s", text)
        return "the index's catalog cannot be used right now; the server's log says why"
    return " ".join(text.split())


def allowed_methods(app: FastAPI, path: str) -> str:
    """The methods some route of ``app`` answers at ``path`` (a 405's ``Allow``), HEAD wherever GET,
    and OPTIONS wherever any."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            if path.startswith(route.path.rstrip("/") + "/"):
                methods |= {"GET"}  # static files
        elif isinstance(route, Route) and route.path_regex.match(path):
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    if methods:  # answered by hardening.Options
        methods.add("OPTIONS")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI, hidden: Sequence[str] = ()) -> None:
    """Answer every error ``app`` meets as JSON; no message shows any of ``hidden``."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": public_message(exc.message, hidden)}, status_code=exc.status)

    @app.exception_handler(SearchlibError)
    async def _lib_error(_request: Request, exc: SearchlibError):
        if isinstance(exc, CatalogUnavailableError):  # names the database host: the log has it
            log.warning("catalog unreachable: %s", exc)
            return JSONResponse({"error": "the index's catalog database cannot be reached right now; try again "
                                 "shortly"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        status = status_of(exc)  # every 503 says when to come back, as the contract declares
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONResponse({"error": public_message(in_api_words(str(exc)), hidden)}, status_code=status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        if tuple(first.get("loc", ())) == ("path", "image_id") and first.get("type") in (
                "less_than_equal", "greater_than_equal"):  # an integer out of the 64-bit range: no image has it
            given = str(first.get("input", ""))[:40]
            return JSONResponse({"error": f"no indexed image has id {given}"}, status_code=404)
        if first.get("type") == "string_pattern_mismatch" and where in PATTERN_HELP:  # not a regex, a hint
            return JSONResponse({"error": f"{where}: {PATTERN_HELP[where]}"}, status_code=400)
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}".strip(": ")}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = "no such page or endpoint"
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request.app, request.url.path)
            message = f"{request.method} is not answered here; use {headers['Allow']}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"},
                            status_code=500)
