"""Image uploads: read within the size limit."""

from __future__ import annotations

from fastapi import UploadFile

from .errors import ApiError


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The bytes of an uploaded file.

    Raises:
        ApiError: 413 when it is larger than ``limit`` bytes, 400 when it is empty.
    """
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the upload is larger than {limit // (1 << 20)} MiB")
    if not data:
        raise ApiError(400, "the uploaded file is empty")
    return data
