"""The HTTP API (``/api/v1``) and the web page (``/``) over one index, built on FastAPI.

Every endpoint goes through the public :mod:`searchlib` API (``Index.search``, ``Index.image``,
``Index.thumbnail``, ``classify_vectors``...); nothing here reimplements a search. The server is
read-only: no endpoint changes the index (its derived caches aside). Files are served only by
catalog id; no file path ever comes from a request. Errors are JSON ``{"error": "..."}`` with a
proper status code, never a stack trace.

The endpoints live in routers by concern (``routes_search``, ``routes_images``,
``routes_library``); this module assembles them with the error handlers and the token check.
"""

from __future__ import annotations

import hmac
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from . import routes_images, routes_library, routes_search
from .deps import IndexHolder
from .errors import install_error_handlers

STATIC = Path(__file__).resolve().parent / "static"
#: Largest upload accepted by default (bytes).
MAX_UPLOAD = 20 << 20
TOKEN_COOKIE = "searchlib_token"


def create_app(index_dir: str | os.PathLike, catalog: str | None = None, token: str | None = None,
               device: str = "auto", max_upload: int = MAX_UPLOAD) -> FastAPI:
    """The FastAPI application serving the index at ``index_dir``.

    Args:
        index_dir: the index directory (it may not exist yet: the page then says how to index).
        catalog: a catalog database URL, as for :func:`searchlib.open_index`.
        token: if set, every request must carry it (``Authorization: Bearer TOKEN``, a ``token``
            query parameter, or the cookie the page gets when opened with ``?token=``).
        device: where the model runs when a query needs the full model.
        max_upload: the largest image upload accepted, in bytes.
    """
    holder = IndexHolder(index_dir, catalog, device)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        holder.close()

    app = FastAPI(title="searchlib", version=_version(), docs_url="/docs", redoc_url=None, lifespan=lifespan,
                  description="Search photos by what is in them (CLIP). Read-only; files are served by id.")
    app.state.holder = holder
    app.state.max_upload = max_upload
    install_error_handlers(app)

    # -- the token (a middleware only when there is one: each costs every request time) --------
    if token is not None:
        @app.middleware("http")
        async def _check_token(request: Request, call_next):
            given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a valid token is required (Authorization: Bearer TOKEN, or ?token=)"},
                                    status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):  # the page and its images then carry it by themselves
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response

    for module in (routes_search, routes_images, routes_library):
        # The routers' routes become the app's own: FastAPI >= 0.16x keeps an included router as
        # one opaque entry of app.routes, and whatever lists the routes (the 405 answer's Allow,
        # the tests) needs them flat. The routers have no prefix or dependencies to lose.
        app.router.routes.extend(module.router.routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    return app


def _version() -> str:
    from .. import __version__

    return __version__
