"""Endpoints about the whole library: what the index holds, zero-shot classification, near
duplicates, tags."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..analysis import MIN_DUPLICATE_THRESHOLD, class_vectors, classify_vectors, near_duplicates, parse_labels
from ..errors import IndexNotFoundError
from ..query import DUPLICATE_THRESHOLD, MAX_K
from .deps import API, Holder, MaxUpload, OpenIndex, links
from .errors import ApiError, public_message
from .uploads import read_upload

router = APIRouter()


@router.get(f"{API}/info", summary="What the index holds (never where its catalog is)")
def info(request: Request, holder: Holder) -> dict:
    try:
        index = holder.get()
    except IndexNotFoundError as e:
        return {"images": 0, "model": None, "empty": True, "message": public_message(str(e), request.app.state.hidden)}
    out = index.info()
    # A catalog URL can carry a password, and names a database host either way: only its kind is told.
    del out["catalog"]
    out["catalog_backend"] = "sqlite" if index.catalog.is_sqlite else "postgresql"
    out["generation"] = index.generation()
    out["empty"] = out["images"] == 0
    return out


@router.post(f"{API}/classify", summary="Zero-shot scores per label for indexed ids or an uploaded image")
async def classify(labels: Annotated[str, Form(min_length=1, description="Comma-separated labels, at least two")],
                   holder: Holder, max_upload: MaxUpload,
                   ids: Annotated[str | None, Form(pattern=r"^[0-9 ,]*$",
                                                   description="Comma-separated image ids")] = None,
                   image: Annotated[UploadFile | None, File()] = None) -> list[dict]:
    label_list = parse_labels(labels)
    data = await read_upload(image, max_upload) if image is not None else None
    try:
        wanted = [int(i) for i in (ids or "").replace(" ", "").split(",") if i]
    except ValueError as e:
        raise ApiError(400, "ids must be comma-separated integers") from e
    if not wanted and data is None:
        raise ApiError(400, "give ids or an image")
    if len(wanted) > MAX_K:
        raise ApiError(400, f"at most {MAX_K} ids at once")

    def run() -> list[dict]:  # in a worker thread: the model must not block the event loop
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


@router.get(f"{API}/duplicates", summary="Groups of near-identical images")
def duplicates(index: OpenIndex,
               threshold: Annotated[float, Query(ge=MIN_DUPLICATE_THRESHOLD, le=1)] = DUPLICATE_THRESHOLD) -> dict:
    groups = near_duplicates(index, threshold)
    return {"threshold": threshold, "groups": [[{**m, **links(m["id"])} for m in g] for g in groups]}


@router.get(f"{API}/tags", summary="Tags stored by 'searchlib tag', with their counts")
def tags(index: OpenIndex) -> dict[str, int]:
    return index.catalog.tag_counts()
