"""Search endpoints: by text, by an uploaded image (optionally with text), and "more like this"."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from ..index import MAX_K, Index
from ..query import Hit, QueryTerm, parse_query
from .deps import API, Holder, ImageId, K, MaxUpload, Offset, OpenIndex, Relative, Score, SearchFilters, links
from .errors import ApiError
from .uploads import read_upload

router = APIRouter()
#: Some character that str.strip() keeps (it also strips \x1c-\x1f, which regex \s does not).
NOT_BLANK = r"[^\s\x1c-\x1f]"


@router.get(f"{API}/search", summary="Text search (terms combine with ' + ' and ' - ', 'W:term' weighs)")
def search(q: Annotated[str, Query(min_length=1, max_length=2000, pattern=NOT_BLANK, description="What to look for")],
           filters: SearchFilters, index: OpenIndex, k: K = 20, offset: Offset = 0,
           min_score: Score = None, relative: Relative = None,
           relevant: Annotated[bool, Query(description="Only hits judged relevant (relevance >= 0.5)")] = False,
           sort: Annotated[str, Query(pattern="^(score|date|date-asc)$",
                                      description="score, date (newest first) or date-asc")] = "score",
           collapse: Annotated[bool, Query(description="Fold near-duplicates into their best hit")] = False) -> dict:
    if not q.strip():
        raise ApiError(400, "q is empty; say what to look for, e.g. 'a dog on a beach'")
    started = time.perf_counter()
    check_paging(k, offset)
    read = index.place_query(q)  # "... in Tokyo": the rest is the text, Tokyo a filter
    if read.places:
        filters = replace(filters, places=filters.places + read.places)
    hits = index.search(text_terms(read.text if read.places else q), k=k, offset=offset, filters=filters,
                        min_score=min_score, relative=relative, relevant=relevant, sort=sort, collapse=collapse)
    return hits_response(index, hits, k, offset, started, {"q": q, "relevant": relevant, "sort": sort,
                                                           "collapse": collapse, "places": list(filters.places)})


@router.post(f"{API}/search", summary="Search by an uploaded image (multipart 'image'), optionally with text")
async def search_upload(image: Annotated[UploadFile, File(description="An image file")], filters: SearchFilters,
                        holder: Holder, max_upload: MaxUpload, q: Annotated[str | None, Form()] = None,
                        k: K = 20, offset: Offset = 0, min_score: Score = None,
                        relative: Relative = None) -> dict:
    started = time.perf_counter()
    data = await read_upload(image, max_upload)
    check_paging(k, offset)

    def run() -> dict:  # in a worker thread: opening the index and embedding must not block the event loop
        index = holder.get()
        terms = [QueryTerm(data, 1.0, "image")] + (text_terms(q) if q and q.strip() else [])
        hits = index.search(terms, k=k, offset=offset, filters=filters, min_score=min_score, relative=relative)
        return hits_response(index, hits, k, offset, started, {"q": q, "image": image.filename})

    return await run_in_threadpool(run)


@router.get(f"{API}/images/{{image_id}}/similar", summary="More like this: images near an indexed one")
def similar(image_id: ImageId, filters: SearchFilters, index: OpenIndex, k: K = 20, offset: Offset = 0,
            q: Annotated[str | None, Query(max_length=2000)] = None) -> dict:
    started = time.perf_counter()
    check_paging(k, offset)
    terms = [QueryTerm(index.vector_of(image_id), 1.0, "vector")] + (text_terms(q) if q and q.strip() else [])
    hits = index.search(terms, k=k, offset=offset, filters=filters)
    return hits_response(index, hits, k, offset, started, {"like": image_id, "q": q})


def check_paging(k: int, offset: int) -> None:
    """Refuse a page that reaches past the deepest hit a search may return."""
    if not 0 <= offset <= MAX_K - k:
        raise ApiError(400, f"offset + k must be at most {MAX_K}")


def text_terms(q: str) -> list[QueryTerm]:
    """Query terms of ``q``, all text: a server never looks at a path named in a request."""
    return parse_query(q)


def hit_json(hit: Hit) -> dict:
    """A hit as JSON, with the links the page follows."""
    return {**hit.to_dict(), **links(hit.id)}


def hits_response(index: Index, hits: list[Hit], k: int, offset: int, started: float, query: dict) -> dict:
    """The JSON answer of every search endpoint."""
    text = query.get("q") or ""
    return {"hits": [hit_json(h) for h in hits], "k": k, "offset": offset,
            "warnings": index.query_warnings(text) if text else [],
            "next_offset": offset + k if len(hits) == k and offset + 2 * k <= MAX_K else None,
            "generation": index.generation(), "took_ms": round(1000 * (time.perf_counter() - started), 1),
            "query": query}
