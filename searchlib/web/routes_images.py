"""One indexed image: its metadata, a thumbnail, the original file. Files are found by catalog id
only; no file path ever comes from a request."""

from __future__ import annotations

import mimetypes
import os
from email.utils import formatdate
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from ..errors import ImageDecodeError
from ..records import path_fields
from .deps import API, ImageId, OpenIndex, links
from .errors import ApiError
from .files import byte_range, etag_matches, stream
from .middleware import HEAD_FLAG

router = APIRouter()
#: Browsers may keep files and thumbnails but must ask again (a 304 is cheap), so a photo changed
#: on disk shows at once; the ETag follows the content.
REVALIDATE = "private, no-cache"


@router.get(f"{API}/images/{{image_id}}", summary="An image's metadata")
def image(image_id: ImageId, index: OpenIndex) -> dict:
    row = index.image(image_id)
    return {"id": row.id, **path_fields(row.path), **row.to_dict(), **links(row.id)}


@router.get(f"{API}/images/{{image_id}}/thumbnail", summary="A JPEG thumbnail (EXIF orientation applied)")
def thumbnail(request: Request, image_id: ImageId, index: OpenIndex,
              size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
    try:
        thumb = index.thumbnail(image_id, size)
    except ImageDecodeError as e:
        raise ApiError(404 if "cannot be read" in str(e) else 422, " ".join(str(e).split())) from e
    etag = f'"{thumb.etag}"'
    headers = {"ETag": etag, "Cache-Control": REVALIDATE}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if thumb.data is not None:  # just made: no need to read it back
        return Response(thumb.data, media_type="image/jpeg", headers=headers)
    return FileResponse(thumb.path, media_type="image/jpeg", headers=headers)


@router.get(f"{API}/images/{{image_id}}/file", summary="The original file, exactly as indexed (Range requests work)",
            responses={404: {"description": "No such image, or its file is gone or is not the indexed one any more"}})
def original(request: Request, image_id: ImageId, index: OpenIndex) -> Response:
    row = index.image(image_id)
    handle, st = request.app.state.files.open(row)
    kind = (row.record.metadata.format or "").lower()
    media = mimetypes.types_map.get(f".{kind}") or mimetypes.guess_type(row.path)[0] or "application/octet-stream"
    etag = f'"{row.record.content_hash}"'  # the bytes were just checked against it
    headers = {"ETag": etag, "Cache-Control": REVALIDATE, "Accept-Ranges": "bytes",
               "Last-Modified": formatdate(st.st_mtime, usegmt=True), "X-Content-Type-Options": "nosniff",
               "Content-Disposition": _attachment(os.path.basename(row.path))}
    if etag_matches(request.headers.get("if-none-match"), etag):
        handle.close()
        return Response(status_code=304, headers=headers)
    if_range = request.headers.get("if-range")
    try:
        span = byte_range(request.headers.get("range"), st.st_size) \
            if if_range is None or if_range in (etag, headers["Last-Modified"]) else None
    except ValueError as e:
        handle.close()
        return JSONResponse({"error": f"the range is not satisfiable: {e}"}, status_code=416,
                            headers={"Content-Range": f"bytes */{st.st_size}"})
    start, end = span or (0, st.st_size)
    headers["Content-Length"] = str(end - start)
    if span:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{st.st_size}"
    status = 206 if span else 200
    if request.scope.get(HEAD_FLAG):  # headers only: the file need not be read
        handle.close()
        return Response(status_code=status, headers=headers, media_type=media)
    return StreamingResponse(stream(handle, start, end), status_code=status, media_type=media, headers=headers)


def _attachment(name: str) -> str:
    """A Content-Disposition naming the file (any bytes in its name made safe)."""
    name = name.encode("utf-8", "replace").decode()
    quoted = quote(name)
    return f'attachment; filename="{name}"' if quoted == name else f"attachment; filename*=utf-8''{quoted}"
