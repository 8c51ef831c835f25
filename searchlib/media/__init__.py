"""Decoding the files searchlib indexes besides plain images: camera RAW files (:mod:`.raw`) and
videos (:mod:`.video`, loaded only when a video is met: PyAV is a heavy import).

The functions here choose the decoder from the file name's ending (a RAW container cannot be told
from a TIFF by its first bytes) and are what the indexer, thumbnails and query images call with a
path in hand. Plain images go to :mod:`searchlib.imaging`, whose content decides their format.
"""

from __future__ import annotations

import os

import numpy as np

from ..imaging import DEFAULT_MAX_PIXELS, Preprocess, decode_for_model, header_metadata, is_image_name
from ..records import ImageMetadata
from .pairs import PAIR_MODES, siblings_of, skipped_raws
from .raw import RAW_EXTENSIONS, decode_raw_for_model, is_raw_name, raw_metadata

#: Endings of the videos the indexer takes (kept here so a scan does not import PyAV).
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp"})


def is_video_name(name: str) -> bool:
    """Whether a file name has a video ending the indexer takes."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS

__all__ = ["PAIR_MODES", "RAW_EXTENSIONS", "VIDEO_EXTENSIONS", "decode_file_bytes", "file_metadata",
           "is_indexable_name", "is_raw_name", "is_video_name", "siblings_of", "skipped_raws"]


def is_indexable_name(name: str) -> bool:
    """Whether a scan takes a file of this name: an image, RAW or video ending."""
    return is_image_name(name) or is_raw_name(name) or is_video_name(name)


def decode_file_bytes(name: str, data: bytes, prep: Preprocess, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      reduce: bool = True) -> tuple[np.ndarray, ImageMetadata]:
    """A file's bytes -> (uint8 model input, metadata), by the decoder its name calls for.

    Raises:
        ImageDecodeError: bad input, with a one-line reason.
    """
    if is_raw_name(name):
        return decode_raw_for_model(data, prep, max_pixels, os.path.splitext(name)[1], reduce=reduce)
    return decode_for_model(data, prep, max_pixels=max_pixels, reduce=reduce)


def file_metadata(name: str, data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageMetadata:
    """A file's metadata without decoding its pixels (for a file whose vector is already known)."""
    if is_raw_name(name):
        return raw_metadata(data, max_pixels, os.path.splitext(name)[1])
    return header_metadata(data, max_pixels)
