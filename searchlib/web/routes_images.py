"""One indexed image: its metadata, a thumbnail, the original file. Files are found by catalog id
only; no file path ever comes from a request."""

from __future__ import annotations

import mimetypes
import os
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from ..errors import ImageDecodeError
from ..records import path_fields
from .deps import API, OpenIndex, links
from .errors import ApiError

router = APIRouter()


@router.get(f"{API}/images/{{image_id}}", summary="An image's metadata")
def image(image_id: int, index: OpenIndex) -> dict:
    row = index.image(image_id)
    return {"id": row.id, **path_fields(row.path), **row.to_dict(), **links(row.id)}


@router.get(f"{API}/images/{{image_id}}/thumbnail", summary="A JPEG thumbnail (EXIF orientation applied)")
def thumbnail(request: Request, image_id: int, index: OpenIndex,
              size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
    try:
        thumb = index.thumbnail(image_id, size)
    except ImageDecodeError as e:
        raise ApiError(404 if "cannot be read" in str(e) else 422, " ".join(str(e).split())) from e
    etag = f'"{thumb.etag}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if thumb.data is not None:  # just made: no need to read it back
        return Response(thumb.data, media_type="image/jpeg", headers=headers)
    return FileResponse(thumb.path, media_type="image/jpeg", headers=headers)


@router.get(f"{API}/images/{{image_id}}/file", summary="The original file")
def original(image_id: int, index: OpenIndex) -> FileResponse:
    row = index.image(image_id)
    if not os.path.isfile(row.path):
        raise ApiError(404, f"image {image_id}'s file is gone from disk; run 'searchlib index' to update")
    kind = (row.record.metadata.format or "").lower()
    media = mimetypes.types_map.get(f".{kind}") or mimetypes.guess_type(row.path)[0] or "application/octet-stream"
    return FileResponse(row.path, media_type=media, headers={"Cache-Control": "private, max-age=3600"},
                        filename=os.path.basename(row.path).encode("utf-8", "replace").decode())
