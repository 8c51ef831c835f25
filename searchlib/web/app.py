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
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from . import routes_images, routes_library, routes_search
from .admission import DECODE_WAIT_S, MAX_IN_FLIGHT, Admission
from .contract import install_contract
from .deps import IndexHolder
from .errors import install_error_handlers
from .files import VerifiedFiles
from .hardening import Options, SecurityHeaders
from .middleware import FORM_ALLOWANCE, BodyLimit, HeadAsGet, HostCheck

STATIC = Path(__file__).resolve().parent / "static"
#: Largest upload accepted by default (bytes).
MAX_UPLOAD = 20 << 20
TOKEN_COOKIE = "searchlib_token"


def create_app(index_dir: str | os.PathLike, catalog: str | None = None, token: str | None = None,
               device: str = "auto", max_upload: int = MAX_UPLOAD,
               allowed_hosts: Sequence[str] | None = None, cors_origins: Sequence[str] = (),
               max_in_flight: int = MAX_IN_FLIGHT, decode_wait: float = DECODE_WAIT_S) -> FastAPI:
    """The FastAPI application serving the index at ``index_dir``.

    Args:
        index_dir: the index directory (it may not exist yet: the page then says how to index).
        catalog: a catalog database URL, as for :func:`searchlib.open_index`.
        token: if set, every request must carry it (``Authorization: Bearer TOKEN``, a ``token``
            query parameter, or the cookie the page gets when opened with ``?token=``).
        device: where the model runs when a query needs the full model.
        max_upload: the largest image upload accepted, in bytes. A request body larger than this
            (plus room for the form fields) is refused before it is read.
        allowed_hosts: host names the server answers to besides loopback ones (``localhost``,
            127.0.0.0/8, ``[::1]``), against DNS rebinding; ``*`` allows any. Without a token, only
            these and loopback names are served; with a token and no list, any name is (the token
            guards).
        cors_origins: origins (``https://app.example``) whose pages may call the API from a
            browser; none by default, so no other site can read an answer.
        max_in_flight: API requests handled at once; more are answered 503 with ``Retry-After``.
        decode_wait: seconds a request's image decode waits for room in the decode memory budget
            before it is answered 503 with ``Retry-After``.
    """
    holder = IndexHolder(index_dir, catalog, device)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        holder.close()

    # /docs is our own page (static/docs.html renders /openapi.json): Swagger UI would load its
    # scripts from a CDN, on the origin that holds the token cookie.
    app = FastAPI(title="searchlib", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Search photos by what is in them (CLIP). Read-only; files are served by id.")
    app.state.holder = holder
    app.state.max_upload = max_upload
    app.state.files = VerifiedFiles()
    app.state.hidden = catalog_forms(catalog)
    install_error_handlers(app, hidden=app.state.hidden)

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
    install_contract(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": "default-src 'self'"})

    # Outermost last: security headers on every answer, the Host check, CORS preflights, the body
    # limit, OPTIONS, then HEAD becomes GET.
    app.add_middleware(HeadAsGet)
    app.add_middleware(Admission, limit=max_in_flight, decode_wait=decode_wait)
    app.add_middleware(Options)
    app.add_middleware(BodyLimit, limit=max_upload + FORM_ALLOWANCE, upload_limit=max_upload)
    if cors_origins:  # outside the token check: a preflight carries no credentials
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "HEAD", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    if token is None or allowed_hosts:  # with a token and no list, the token guards
        app.add_middleware(HostCheck, allowed=allowed_hosts or ())
    app.add_middleware(SecurityHeaders)  # outermost: every answer carries them, a 421 included
    return app


def catalog_forms(catalog: str | None) -> list[str]:
    """The ways a catalog URL (and its password) may appear in a message: none of them is shown to
    an HTTP client."""
    if not catalog:
        return []
    forms = {catalog}
    try:
        from sqlalchemy.engine import make_url

        url = make_url(catalog)
        forms |= {url.render_as_string(hide_password=True), url.render_as_string(hide_password=False)}
        forms |= {str(v) for k, v in url.query.items() if "pass" in k.lower() and len(str(v)) >= 4}
        if url.password and len(str(url.password)) >= 4:  # shorter ones would match any message
            forms.add(str(url.password))
        if url.database and url.get_backend_name() == "sqlite":
            forms.add(url.database)
    except Exception:  # not a URL SQLAlchemy reads: opening it fails with its own message, hidden as a whole
        pass
    return sorted(forms, key=len, reverse=True)


def _version() -> str:
    from .. import __version__

    return __version__
