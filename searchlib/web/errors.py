"""How the server answers a failure: always JSON ``{"error": "..."}`` with a fitting status code,
never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigError,
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
    if isinstance(error, IndexBusyError):
        return 503
    if isinstance(error, (IndexCorruptError, ModelError)):
        return 500
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error ``app`` meets as JSON."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(SearchlibError)
    async def _lib_error(_request: Request, exc: SearchlibError):
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}".strip(": ")}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such page or endpoint"
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"},
                            status_code=500)
