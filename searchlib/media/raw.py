"""Camera RAW files through LibRaw (rawpy): the picture, its metadata, a thumbnail.

The picture is the camera's embedded preview when its short side covers what is asked for (the
model's input size, a thumbnail's size): a preview is a JPEG the camera already rendered, and
decoding it at reduced size costs a fraction of a demosaic (``benchmarks/bench_raw.py``). Otherwise
the sensor data is demosaiced at half size (one RGB pixel per 2x2 Bayer block: no interpolation,
four times fewer pixels). Either way LibRaw's orientation (``sizes.flip``) is applied: preview
pixels are stored as the sensor saw them, whatever EXIF they carry.

Metadata comes from, in order of trust: the RAW's TIFF container (DNG, CR2, NEF, ARW, PEF, SRW, and
ORF and RW2 whose TIFF header has a maker's magic number), then every EXIF block of the preview
JPEG (LibRaw writes one from what it parsed when the camera's preview has none: that is how CR3
and RAF files get their camera and date), then LibRaw's own capture time.

LibRaw reports damaged data on stderr; :func:`quiet_stderr` keeps that out of the user's terminal
(it goes to the debug log).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image

from ..errors import DecodeBusyError, ImageDecodeError
from ..imaging import Preprocess, check_decoded_size, exif_facts, open_image, to_model_pixels
from ..records import ImageMetadata
from .extent import truncated

log = logging.getLogger(__name__)

#: File name endings read as camera RAW files (LibRaw reads many more; these are the common ones).
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw"})

# LibRaw's flip (dcraw's) as an EXIF orientation, and the Pillow transpose that applies it.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}

# TIFF headers with a maker's magic number in place of 42 (Olympus ORF, Panasonic RW2): the IFDs
# that follow are plain TIFF, so the EXIF reader is handed a standard header instead.
_MAKER_TIFF_MAGIC = (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def is_raw_name(name: str) -> bool:
    """Whether a file name has a RAW ending (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS


_stderr_lock = threading.Lock()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send what C code writes to file descriptor 2 to the debug log instead of the terminal.

    LibRaw prints "data corrupted" lines itself; a damaged file is already reported as a failure
    with a reason, so the lines would only be noise. The descriptor is process-wide: the lock keeps
    two threads from swapping it at once (a decode worker has one thread; a server thread making a
    RAW thumbnail holds it for the few milliseconds of that call).
    """
    with _stderr_lock, tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep quiet
            yield
            return
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise = sink.read(4096).decode("utf-8", "replace").strip()
            if noise:
                log.debug("LibRaw said: %s", noise)


@dataclass(frozen=True)
class RawPicture:
    """What one RAW file shows: an oriented RGB image, where it came from, and the file's metadata."""

    image: Image.Image
    source: str  # "preview" or "demosaic"
    metadata: ImageMetadata


def _libraw_error(e: Exception) -> ImageDecodeError:
    import rawpy

    if isinstance(e, rawpy.LibRawFileUnsupportedError):
        return ImageDecodeError("not a RAW file LibRaw can read (unknown format or damaged header)")
    if isinstance(e, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
        return ImageDecodeError("damaged RAW file (truncated or corrupt data)")
    if isinstance(e, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, rawpy.LibRawMemPoolOverflowError)):
        return ImageDecodeError("RAW file too large for LibRaw to decode")
    return ImageDecodeError(f"cannot decode RAW file ({type(e).__name__}: {e})")


@contextmanager
def _opened(data: bytes, max_pixels: int | None) -> Iterator:
    """The RAW opened by LibRaw (header parsed, nothing unpacked), with the size guard applied."""
    import rawpy

    if not data:
        raise ImageDecodeError("empty file")
    raw = rawpy.RawPy()
    try:
        try:
            with quiet_stderr():
                raw.open_buffer(io.BytesIO(data))
        except rawpy.LibRawError as e:
            raise _libraw_error(e) from e
        cut = truncated(data)
        if cut:  # the preview alone would still open: judge the whole file, as a damaged image is judged
            raise ImageDecodeError(f"damaged RAW file: truncated ({cut})")
        sizes = raw.sizes
        # The sensor data unpacks to 16 bits per photosite; hold it to the same memory as any image.
        check_decoded_size(sizes.raw_width, sizes.raw_height, "I;16", max_pixels)
        yield raw
    finally:
        raw.close()


def _embedded_preview(raw, max_pixels: int | None) -> tuple[Image.Image, list[bytes]] | None:
    """The camera's preview (not yet oriented) and the EXIF blocks of a JPEG preview; None if absent."""
    import rawpy

    try:
        with quiet_stderr():
            thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError as e:
        log.debug("preview unreadable (%s): using the sensor data", e)
        return None
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        array = np.asarray(thumb.data)
        check_decoded_size(array.shape[1], array.shape[0], "RGB", max_pixels)
        return Image.fromarray(array[..., :3].astype(np.uint8, copy=False)), []
    data = bytes(thumb.data)
    try:
        img = open_image(data, max_pixels)
    except ImageDecodeError as e:
        log.debug("preview unreadable (%s): using the sensor data", e)
        return None
    return img, jpeg_exif_blocks(data)


def jpeg_exif_blocks(data: bytes) -> list[bytes]:
    """Every EXIF APP1 segment of a JPEG, in file order (Pillow reads only the first, and LibRaw
    puts its own in front of a preview's)."""
    blocks, pos = [], 2
    if data[:2] != b"\xff\xd8":
        return blocks
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more headers
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            blocks.append(segment[6:])
        pos += 2 + length
    return blocks


def _exif_of(tiff: bytes) -> dict:
    """:func:`~searchlib.imaging.exif_facts` of a TIFF-structured block; empty when unreadable."""
    exif = Image.Exif()
    try:
        # Pillow warns about every tag of a damaged directory: noise on the user's terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif.load(tiff)
            return exif_facts(exif)
    except Exception:  # a damaged container must not cost the picture
        return {}


def _container_facts(data: bytes) -> dict:
    head = data[:4]
    if head in _MAKER_TIFF_MAGIC:
        return _exif_of((b"II*\x00" if head.startswith(b"II") else b"MM\x00*") + data[4:])
    if head in _TIFF_MAGIC:
        return _exif_of(data)
    return {}


def _metadata(data: bytes, raw, preview_exif: list[bytes], ext: str | None) -> ImageMetadata:
    """Metadata of the RAW: container EXIF first, then the preview's EXIF blocks, then LibRaw."""
    facts: dict = {}
    for source in [_container_facts(data)] + [_exif_of(block) for block in preview_exif]:
        for name, value in source.items():
            facts.setdefault(name, value)
    if "taken_at" not in facts:
        try:
            stamp = raw.other.timestamp
            if isinstance(stamp, datetime) and stamp.timestamp() > 0:
                facts["taken_at"] = stamp
        except (OverflowError, OSError, ValueError):
            pass
    sizes = raw.sizes
    # LibRaw's flip is what orients the pixels here, so it is the orientation reported.
    flip = sizes.flip if sizes.flip in _FLIP_TO_ORIENTATION else 0
    facts["orientation"] = _FLIP_TO_ORIENTATION[flip]
    width, height = sizes.width, sizes.height
    if flip in (5, 6):
        width, height = height, width
    return ImageMetadata(width=width, height=height, format=(ext or "raw").lstrip(".").upper(), **facts)


def _oriented(img: Image.Image, flip: int) -> Image.Image:
    return img.transpose(_TRANSPOSE[flip]) if flip in _TRANSPOSE else img


def read_raw(data: bytes, min_side: int, max_pixels: int | None, ext: str | None = None,
             reduce: bool = True, pixels: bool = True) -> RawPicture | ImageMetadata:
    """The oriented picture of a RAW file and its metadata.

    Args:
        data: the file's bytes.
        min_side: the short side the picture must cover; a smaller preview is not used.
        max_pixels: the decode guard (:func:`~searchlib.imaging.check_decoded_size`).
        ext: the file name's ending, for the reported format (``.nef`` -> ``NEF``).
        reduce: decode a JPEG preview at the smallest DCT scale that still covers ``min_side``.
        pixels: False returns the :class:`ImageMetadata` only (the preview is read for its EXIF,
            nothing is decoded).

    Raises:
        ImageDecodeError: not a RAW file LibRaw reads, damaged, or too large.
    """
    import rawpy

    with _opened(data, max_pixels) as raw:
        preview = _embedded_preview(raw, max_pixels)
        meta = _metadata(data, raw, preview[1] if preview else [], ext)
        if not pixels:
            return meta
        flip = raw.sizes.flip
        if preview is not None and min(preview[0].size) >= min_side:
            img = preview[0]
            if reduce and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            try:
                img.load()
                out = _oriented(img.convert("RGB"), flip)
                out.info = {}  # the preview's EXIF/XMP orientation must not rotate it a second time
                return RawPicture(out, "preview", meta)
            except Exception as e:  # the camera's preview is damaged: the sensor data may not be
                log.debug("preview undecodable (%s: %s): using the sensor data", type(e).__name__, e)
        try:
            with quiet_stderr():
                # half_size: one RGB pixel per 2x2 block, no interpolation; LibRaw applies the flip.
                array = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        except rawpy.LibRawError as e:
            raise _libraw_error(e) from e
        return RawPicture(Image.fromarray(array), "demosaic", meta)


def decode_raw_for_model(data: bytes, prep: Preprocess, max_pixels: int | None, ext: str | None = None,
                         reduce: bool = True) -> tuple[np.ndarray, ImageMetadata]:
    """RAW bytes -> (uint8 model input ``(S, S, 3)``, metadata), like
    :func:`~searchlib.imaging.decode_for_model` for images.

    Raises:
        ImageDecodeError: not a RAW file LibRaw reads, damaged, or too large.
    """
    picture = read_raw(data, prep.image_size, max_pixels, ext, reduce=reduce)
    assert isinstance(picture, RawPicture)
    try:
        return to_model_pixels(picture.image, prep, reduce=False), picture.metadata
    except DecodeBusyError:  # busy is not bad input: the caller may retry
        raise
    except Exception as e:
        raise ImageDecodeError(f"cannot decode RAW picture ({type(e).__name__}: {e})") from e


def raw_metadata(data: bytes, max_pixels: int | None, ext: str | None = None) -> ImageMetadata:
    """The metadata of a RAW file without decoding its picture (a file whose vector is known)."""
    meta = read_raw(data, 0, max_pixels, ext, pixels=False)
    assert isinstance(meta, ImageMetadata)
    return meta
