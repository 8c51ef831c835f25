"""The HTTP API (``/api/v1``) and the web page (``/``) over one index, built on FastAPI.

Every endpoint goes through the public :mod:`searchlib` API (``Index.search``, ``Index.image``,
``Index.thumbnail``, ``classify_vectors``...); nothing here reimplements a search. The server is
read-only: no endpoint changes the index (its derived caches aside). Files are served only by
catalog id; no file path ever comes from a request. Errors are JSON ``{"error": "..."}`` with a
proper status code, never a stack trace.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
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
from ..filters import Filters
from ..index import MAX_K, Index, open_index
from ..query import Hit

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
API = "/api/v1"
#: Largest upload accepted by default (bytes).
MAX_UPLOAD = 20 << 20
TOKEN_COOKIE = "searchlib_token"


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _status_of(error: SearchlibError) -> int:
    if isinstance(error, (IndexNotFoundError, ImageNotFoundError)):
        return 404
    if isinstance(error, (QueryError, ConfigError, ImageDecodeError)):
        return 400
    if isinstance(error, IndexBusyError):
        return 503
    if isinstance(error, (IndexCorruptError, ModelError)):
        return 500
    return 500


class IndexHolder:
    """Opens the index on first use, and again later if it did not exist yet (so a server started
    before the first ``searchlib index`` shows the photos once they are there)."""

    def __init__(self, directory: str | os.PathLike, catalog: str | None, device: str):
        self.directory, self.catalog, self.device = directory, catalog, device
        self._index: Index | None = None
        self._lock = threading.Lock()

    def get(self) -> Index:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    index = open_index(self.directory, device=self.device, catalog=self.catalog)
                    index.batch_queries()  # concurrent queries share encoder calls and vector scans
                    self._index = index
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


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

    # -- errors: always JSON, never a trace --------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(SearchlibError)
    async def _lib_error(_request: Request, exc: SearchlibError):
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=_status_of(exc))

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

    _routes(app, holder, max_upload)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    return app


def _version() -> str:
    from .. import __version__

    return __version__


# -- request parsing --------------------------------------------------------------------------
def _filters(folder: str | None, after: str | None, before: str | None, camera: str | None,
             min_width: int | None, min_height: int | None, formats: list[str] | None,
             tags: list[str] | None) -> Filters:
    return Filters.from_strings(folder, after, before, camera, min_width, min_height, formats or (), tags or ())


def _hit_json(hit: Hit) -> dict:
    out = hit.to_dict()
    out.update(_links(hit.id))
    return out


def _links(image_id: int) -> dict:
    return {"thumbnail_url": f"{API}/images/{image_id}/thumbnail?size=256",
            "file_url": f"{API}/images/{image_id}/file", "similar_url": f"{API}/images/{image_id}/similar"}


def _hits_response(index: Index, hits: list[Hit], k: int, offset: int, started: float, query: dict) -> dict:
    text = query.get("q") or ""
    return {"hits": [_hit_json(h) for h in hits], "k": k, "offset": offset,
            "warnings": index.query_warnings(text) if text else [],
            "next_offset": offset + k if len(hits) == k and offset + 2 * k <= MAX_K else None,
            "generation": index.generation(), "took_ms": round(1000 * (time.perf_counter() - started), 1),
            "query": query}


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the upload is larger than {limit // (1 << 20)} MiB")
    if not data:
        raise ApiError(400, "the uploaded file is empty")
    return data


# Shared query parameters (module level: FastAPI resolves the string annotations here).
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many hits")]
Offset = Annotated[int, Query(ge=0, le=MAX_K - 1, description="Skip this many (paging)")]
Folder = Annotated[str | None, Query(alias="in", description="Only images under this folder")]
Date = Annotated[str | None, Query(description="YYYY, YYYY-MM or YYYY-MM-DD")]
Multi = Annotated[list[str] | None, Query()]
Pixels = Annotated[int | None, Query(ge=1)]


def _routes(app: FastAPI, holder: IndexHolder, max_upload: int) -> None:
    def search_args(k, offset, folder, after, before, camera, min_width, min_height, formats, tags):
        if not 0 <= offset <= MAX_K - k:
            raise ApiError(400, f"offset + k must be at most {MAX_K}")
        return _filters(folder, after, before, camera, min_width, min_height, formats, tags)

    @app.get(f"{API}/search", summary="Text search (terms combine with ' + ' and ' - ', 'W:term' weighs)")
    def search(q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for")],
               k: K = 20, offset: Offset = 0, folder: Folder = None, after: Date = None, before: Date = None,
               camera: str | None = None, min_width: Pixels = None,
               min_height: Pixels = None, format: Multi = None, tag: Multi = None,
               min_score: float | None = None, relative: Annotated[float | None, Query(ge=0)] = None,
               relevant: Annotated[bool, Query(description="Only hits judged relevant (relevance >= 0.5)")] = False,
               sort: Annotated[str, Query(pattern="^(score|date)$")] = "score") -> dict:
        if not q.strip():
            raise ApiError(400, "q is empty; say what to look for, e.g. 'a dog on a beach'")
        started = time.perf_counter()
        filters = search_args(k, offset, folder, after, before, camera, min_width, min_height, format, tag)
        index = holder.get()
        hits = index.search(_text_terms(q), k=k, offset=offset, filters=filters, min_score=min_score, relative=relative,
                            relevant=relevant, sort=sort)
        return _hits_response(index, hits, k, offset, started, {"q": q, "relevant": relevant})

    @app.post(f"{API}/search", summary="Search by an uploaded image (multipart 'image'), optionally with text")
    async def search_upload(image: Annotated[UploadFile, File(description="An image file")],
                            q: Annotated[str | None, Form()] = None, k: K = 20, offset: Offset = 0,
                            folder: Folder = None, after: Date = None, before: Date = None,
                            camera: str | None = None, min_width: Pixels = None,
                            min_height: Pixels = None, format: Multi = None,
                            tag: Multi = None, min_score: float | None = None,
                            relative: Annotated[float | None, Query(ge=0)] = None) -> dict:
        started = time.perf_counter()
        data = await _read_upload(image, max_upload)
        filters = search_args(k, offset, folder, after, before, camera, min_width, min_height, format, tag)
        from starlette.concurrency import run_in_threadpool

        from ..query import QueryTerm

        def run() -> dict:
            index = holder.get()
            terms = [QueryTerm(data, 1.0, "image")] + (_text_terms(q) if q and q.strip() else [])
            hits = index.search(terms, k=k, offset=offset, filters=filters, min_score=min_score, relative=relative)
            return _hits_response(index, hits, k, offset, started, {"q": q, "image": image.filename})

        return await run_in_threadpool(run)

    @app.get(f"{API}/images/{{image_id}}/similar", summary="More like this: images near an indexed one")
    def similar(image_id: int, k: K = 20, offset: Offset = 0, folder: Folder = None, after: Date = None,
                before: Date = None, camera: str | None = None,
                min_width: Pixels = None,
                min_height: Pixels = None, format: Multi = None, tag: Multi = None,
                q: Annotated[str | None, Query(max_length=2000)] = None) -> dict:
        started = time.perf_counter()
        filters = search_args(k, offset, folder, after, before, camera, min_width, min_height, format, tag)
        index = holder.get()
        terms = [_vector_term(index, image_id)] + (_text_terms(q) if q and q.strip() else [])
        hits = index.search(terms, k=k, offset=offset, filters=filters)
        return _hits_response(index, hits, k, offset, started, {"like": image_id, "q": q})

    @app.get(f"{API}/images/{{image_id}}", summary="An image's metadata")
    def image(image_id: int) -> dict:
        from ..records import path_fields

        row = holder.get().image(image_id)
        return {"id": row.id, **path_fields(row.path), **row.to_dict(), **_links(row.id)}

    @app.get(f"{API}/images/{{image_id}}/thumbnail", summary="A JPEG thumbnail (EXIF orientation applied)")
    def thumbnail(request: Request, image_id: int, size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
        try:
            thumb = holder.get().thumbnail(image_id, size)
        except ImageDecodeError as e:
            raise ApiError(404 if "cannot be read" in str(e) else 422, " ".join(str(e).split())) from e
        etag = f'"{thumb.etag}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        if thumb.data is not None:  # just made: no need to read it back
            return Response(thumb.data, media_type="image/jpeg", headers=headers)
        return FileResponse(thumb.path, media_type="image/jpeg", headers=headers)

    @app.get(f"{API}/images/{{image_id}}/file", summary="The original file")
    def original(image_id: int) -> FileResponse:
        row = holder.get().image(image_id)
        if not os.path.isfile(row.path):
            raise ApiError(404, f"image {image_id}'s file is gone from disk; run 'searchlib index' to update")
        kind = (row.record.metadata.format or "").lower()
        media = mimetypes.types_map.get(f".{kind}") or mimetypes.guess_type(row.path)[0] or "application/octet-stream"
        return FileResponse(row.path, media_type=media, headers={"Cache-Control": "private, max-age=3600"},
                            filename=os.path.basename(row.path).encode("utf-8", "replace").decode())

    @app.get(f"{API}/info", summary="What the index holds")
    def info() -> dict:
        try:
            index = holder.get()
        except IndexNotFoundError as e:
            return {"images": 0, "model": None, "empty": True, "message": " ".join(str(e).split())}
        out = index.info()
        out["generation"] = index.generation()
        out["empty"] = out["images"] == 0
        return out

    @app.post(f"{API}/classify", summary="Zero-shot scores per label for indexed ids or an uploaded image")
    async def classify(labels: Annotated[str, Form(description="Comma-separated labels, at least two")],
                       ids: Annotated[str | None, Form(description="Comma-separated image ids")] = None,
                       image: Annotated[UploadFile | None, File()] = None) -> list[dict]:
        from starlette.concurrency import run_in_threadpool

        from ..analysis import class_vectors, classify_vectors, parse_labels

        label_list = parse_labels(labels)
        data = await _read_upload(image, max_upload) if image is not None else None
        try:
            wanted = [int(i) for i in (ids or "").replace(" ", "").split(",") if i]
        except ValueError as e:
            raise ApiError(400, "ids must be comma-separated integers") from e
        if not wanted and data is None:
            raise ApiError(400, "give ids or an image")
        if len(wanted) > MAX_K:
            raise ApiError(400, f"at most {MAX_K} ids at once")

        def run() -> list[dict]:
            import numpy as np

            index = holder.get()
            # The cheap lookups first: an unknown id is a 404 before any label is embedded.
            rows = [(i, index.vector_of(i)) for i in wanted] + ([(None, index.image_vector(data))] if data else [])
            classes = class_vectors(index.embed_texts, label_list)
            probs, sims = classify_vectors(np.stack([v for _, v in rows]), classes)
            return [{"id": i, "label": label_list[int(p.argmax())],
                     "scores": {lb: round(float(x), 6) for lb, x in zip(label_list, p)},
                     "similarities": {lb: round(float(x), 6) for lb, x in zip(label_list, s)}}
                    for (i, _), p, s in zip(rows, probs, sims)]

        return await run_in_threadpool(run)

    @app.get(f"{API}/duplicates", summary="Groups of near-identical images")
    def duplicates(threshold: Annotated[float, Query(gt=0, le=1)] = 0.95) -> dict:
        from ..analysis import near_duplicates

        groups = near_duplicates(holder.get(), threshold)
        return {"threshold": threshold, "groups": [[{**m, **_links(m["id"])} for m in g] for g in groups]}

    @app.get(f"{API}/tags", summary="Tags stored by 'searchlib tag', with their counts")
    def tags() -> dict[str, int]:
        return holder.get().catalog.tag_counts()


def _text_terms(q: str) -> list:
    """Query terms of ``q``, all text: a server never looks at a path named in a request."""
    from ..query import parse_query

    return parse_query(q)


def _vector_term(index: Index, image_id: int) -> Any:
    from ..query import QueryTerm

    return QueryTerm(index.vector_of(image_id), 1.0, "vector")
