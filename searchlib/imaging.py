"""Image decoding, metadata and CLIP preprocessing to uint8 — without torch.

Decode workers import only this module (Pillow + numpy), so they start fast. Pixels leave here as
``uint8`` arrays of shape ``(size, size, 3)``; scaling to float and the model's mean/std happen on
the model's device (``embedding.py``), which keeps the data moved between processes four times
smaller.

The geometry reproduces open_clip's eval transform exactly (torchvision ``Resize`` of the shortest
side with PIL, then ``CenterCrop``), so vectors match open_clip's own preprocessing.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DecodeBusyError, ImageDecodeError
from .records import ImageMetadata

#: The default size guard: images above this many pixels are refused (``--max-megapixels``). An
#: image's decoded bytes are held to what an RGB image of this many pixels takes (see
#: :func:`check_decoded_size`), so a 16-bit or float image cannot cost more memory than that.
DEFAULT_MAX_PIXELS = 178_000_000

#: File name endings considered images when scanning folders. The content still decides the
#: format when decoding.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
    ".heic", ".heif", ".avif",
})


def is_image_name(name: str) -> bool:
    """Whether a file name has an image ending."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

# EXIF tags (numbers from the EXIF 2.32 standard).
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_DATETIME_ORIGINAL = 0x9003


@dataclass(frozen=True)
class Preprocess:
    """The model's input geometry (from its :class:`~searchlib.models.ModelIdentity`)."""

    image_size: int
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


def _clean_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _parse_exif_datetime(value: object) -> datetime | None:
    text = _clean_text(value)
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None


def _gps_degrees(dms: object, ref: object) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)  # type: ignore[union-attr]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60.0 + s / 3600.0
    if not math.isfinite(value):
        return None
    if _clean_text(ref) in ("S", "W"):
        value = -value
    return round(value, 7)


def exif_facts(exif: Image.Exif | None) -> dict:
    """The :class:`ImageMetadata` fields an EXIF block holds (capture time, camera, orientation, GPS);
    absent or unreadable ones are left out. Shared by images and RAW files."""
    facts: dict = {}
    if not exif:
        return facts
    facts["camera_make"] = _clean_text(exif.get(_MAKE))
    facts["camera_model"] = _clean_text(exif.get(_MODEL))
    orientation = exif.get(_ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        facts["orientation"] = orientation
    try:
        sub = exif.get_ifd(_EXIF_IFD)
        facts["taken_at"] = _parse_exif_datetime(sub.get(_DATETIME_ORIGINAL)) or _parse_exif_datetime(
            exif.get(_DATETIME_ORIGINAL)) or _parse_exif_datetime(exif.get(_DATETIME))
        gps = exif.get_ifd(_GPS_IFD)
        if gps:
            facts["gps_lat"] = _gps_degrees(gps.get(2), gps.get(1))
            facts["gps_lon"] = _gps_degrees(gps.get(4), gps.get(3))
    except Exception:
        pass
    return {name: value for name, value in facts.items() if value is not None}


def read_metadata(img: Image.Image) -> ImageMetadata:
    """Size, format and EXIF facts (capture time, camera, orientation, GPS) of an opened image.

    Width and height are as displayed, i.e. after the EXIF orientation is applied.
    """
    width, height = img.size
    try:
        exif = img.getexif()
    except Exception:  # malformed EXIF must not cost the image
        exif = None
    facts = exif_facts(exif)
    if facts.get("orientation") in (5, 6, 7, 8):
        width, height = height, width
    return ImageMetadata(width=width, height=height, format=img.format, **facts)


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif")
_heif_state: bool | None = None


def _heif_available() -> bool:
    """Register pillow-heif's opener once, if the optional extra is installed."""
    global _heif_state
    if _heif_state is None:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_state = True
        except ImportError:
            _heif_state = False
    return _heif_state


#: Bytes one decoded pixel takes in each Pillow mode (modes not listed: 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2,
               "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "CMYK": 4, "I": 4, "F": 4}


def check_decoded_size(width: int, height: int, mode: str, max_pixels: int | None) -> None:
    """The one guard against decompression bombs, applied to every decode before any pixel is read.

    Refuses more than ``max_pixels`` pixels, and more decoded bytes than an RGB image of
    ``max_pixels`` would take: a 16-bit or float image is held to the same memory, not the same
    pixel count. ``None`` turns the guard off (only for callers that decode trusted, small files).

    Raises:
        ImageDecodeError: the image is too large.
    """
    if max_pixels is None:
        return
    pixels = width * height
    decoded = pixels * _MODE_BYTES.get(mode, 4)
    if pixels > max_pixels or decoded > 3 * max_pixels:
        raise ImageDecodeError(
            f"too large: {width}x{height} {mode} ({decoded / 1e6:.0f} MB decoded) exceeds the limit of "
            f"{max_pixels / 1e6:g} megapixels (--max-megapixels)")


_OPEN_LOCK = threading.Lock()


def open_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open image bytes; the content decides the format, not the file name.

    Raises:
        ImageDecodeError: not an image Pillow can read, or too large (:func:`check_decoded_size`).
    """
    if not data:
        raise ImageDecodeError("empty file")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS and data[8:12] != b"avif" and not _heif_available():
        raise ImageDecodeError("HEIC/HEIF image needs the optional extra: pip install 'searchlib[heic]'")
    # Pillow's own bomb guard is replaced by ``max_pixels``, checked on the header before any
    # pixel is decoded, so the user's --max-megapixels decides.
    # Pillow's limit is process-wide: threads opening at once (a server) take turns, or one could
    # restore it while another relies on it being off, or leave it off for good.
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise ImageDecodeError("not a readable image (unknown format or corrupt header)") from e
        except Exception as e:
            raise ImageDecodeError(f"not a readable image ({type(e).__name__}: {e})") from e
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    check_decoded_size(img.size[0], img.size[1], img.mode, max_pixels)
    return img


def _resize_shortest(img: Image.Image, size: int, resample: int) -> Image.Image:
    # torchvision.transforms.Resize(int) on a PIL image: short side -> size, long side truncated.
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), resample)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    # torchvision CenterCrop: pads with zeros when smaller, then crops with rounded offsets.
    w, h = img.size
    if w < size or h < size:
        canvas = Image.new(img.mode, (max(w, size), max(h, size)))
        canvas.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = canvas, canvas.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _resize_longest_pad(img: Image.Image, size: int, resample: int) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    img = img.resize((new_w, new_h), resample)
    canvas = Image.new(img.mode, (size, size))
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


#: Bytes the decodes running at once in one process may hold together: two of the largest the
#: default guard lets through (an RGB image is held at 4 bytes a pixel). A server's threads then
#: never hold more than this for pixels, however many uploads and thumbnails arrive together.
DECODE_BUDGET = 2 * 4 * DEFAULT_MAX_PIXELS


#: How long a decode in this context waits for its share of the budget before it gives up with
#: :class:`~searchlib.errors.DecodeBusyError`; None waits as long as it takes (the indexer). A server
#: sets it per request, so that a flood of uploads is answered "busy, retry" instead of queueing
#: without end.
decode_wait_limit: ContextVar[float | None] = ContextVar("searchlib_decode_wait_limit", default=None)


class DecodeBudget:
    """Decoded bytes held at once by the threads of one process; a decode waits for its share.

    Small images take small shares and pass at once; large ones take turns. A decode larger than
    the whole budget (a raised ``max_pixels``) waits until it can run alone. A decode waits at most
    :data:`decode_wait_limit` seconds when that is set in its context.

    Args:
        total: the bytes all decodes together may hold.
    """

    def __init__(self, total: int):
        self.total = total
        self.held = 0
        #: The most bytes held at once so far (for tests and benchmarks).
        self.peak = 0
        self._changed = threading.Condition()
        self._mine = threading.local()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the block (waiting until they are free).

        A thread that already holds a share (an outer decode step) goes on with it: waiting there
        for a second share could wait forever.
        """
        if getattr(self._mine, "depth", 0):
            self._mine.depth += 1
            try:
                yield
            finally:
                self._mine.depth -= 1
            return
        share = max(0, min(int(nbytes), self.total))
        limit = decode_wait_limit.get()
        with self._changed:
            if not self._changed.wait_for(lambda: self.held + share <= self.total, timeout=limit):
                raise DecodeBusyError(f"other large images are being decoded; none freed room for this one within "
                                      f"{limit:g} s, try again shortly")
            self.held += share
            self.peak = max(self.peak, self.held)
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._changed:
                self.held -= share
                self._changed.notify_all()


#: The budget every decode in this process shares (:func:`to_model_pixels`, thumbnails).
decode_budget = DecodeBudget(DECODE_BUDGET)


def decode_share(img: Image.Image, prep: Preprocess, reduce: bool = True) -> int:
    """The bytes of :data:`decode_budget` that decoding ``img`` for the model takes: the decoded
    image (a JPEG at the scale ``draft`` will pick) and the buffers or copies made from it."""
    held = held_bytes(img)
    if reduce and img.format == "JPEG":
        fits = min(img.size[0] // max(prep.image_size, 1), img.size[1] // max(prep.image_size, 1))
        scale = next((s for s in (8, 4, 2) if fits >= s), 1)
        held //= scale * scale
    return held + (4 * BAND_PIXELS if reduce else 3 * held)


def held_bytes(img: Image.Image) -> int:
    """Bytes Pillow holds for ``img`` once loaded (at its current, possibly drafted, size): 1 a
    pixel for 1/L/P, 2 for 16-bit, 4 for every other mode (Pillow keeps RGB as 4)."""
    width, height = img.size
    per_pixel = 1 if img.mode in ("1", "L", "P") else 2 if img.mode.startswith("I;16") else 4
    return width * height * per_pixel


#: Images up to this many pixels (as decoded) take the reference path of :func:`to_model_pixels`,
#: whose copies cost little at that size; larger ones are downscaled without any full-size copy
#: (see :func:`bounded_model_pixels`).
SMALL_IMAGE_PIXELS = 1 << 22
#: Rows of a large image converted at a time (in pixels: rows x width), when its mode needs a
#: conversion before resizing (palette, CMYK, alpha...): about 16 MB of RGBA per band.
BAND_PIXELS = 1 << 22
#: Pillow's ``reducing_gap`` for large images: a box reduction down to 3x the output, then the
#: model's filter. Pillow documents the result as indistinguishable from a full resample; a
#: 13000x13000 PNG took 43 s to resample in full on a shared core.
REDUCING_GAP = 3.0

#: EXIF orientation -> the transposition that displays the stored pixels (as ``exif_transpose``).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def to_model_pixels(img: Image.Image, prep: Preprocess, reduce: bool = True) -> np.ndarray:
    """Decode, orient and resize an opened image to the model's uint8 input ``(S, S, 3)``.

    Args:
        img: an image from :func:`open_image` (not yet loaded).
        prep: the model's geometry.
        reduce: let JPEG decoding skip detail the model cannot see (Pillow ``draft``: DCT scaling to
            the smallest size that still covers the input), and downscale images above
            :data:`SMALL_IMAGE_PIXELS` with :func:`bounded_model_pixels` (no full-size copy, so
            the memory of a decode stays that of the decoded image). False gives the reference
            full decode.
    """
    size = prep.image_size
    if reduce and img.format == "JPEG":
        # draft keeps both sides >= the request, so the short side still covers the model input.
        img.draft("RGB", (size, size))
    try:
        img.seek(0)  # first frame of animations
    except EOFError:
        pass
    with decode_budget.hold(decode_share(img, prep, reduce)):
        # Decode here, outside the guard below: Pillow clears a failed image's tiles, so a decode
        # error swallowed there would let a corrupt file through as partly grey pixels on the next load.
        img.load()
        if reduce and img.size[0] * img.size[1] > SMALL_IMAGE_PIXELS:
            return bounded_model_pixels(img, prep)
        return _reference_pixels(img, prep)


def _reference_pixels(img: Image.Image, prep: Preprocess) -> np.ndarray:
    """open_clip's eval transform on a loaded image, step by step (full-size intermediate copies)."""
    size = prep.image_size
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:
        pass  # a broken orientation tag: keep the pixels as stored
    resample = _FILTERS.get(prep.interpolation, Image.Resampling.BICUBIC)
    if img.mode not in ("RGB", "L", "RGBA") and not _is_deep(img.mode):
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if prep.resize_mode == "squash":
        img = img.resize((size, size), resample)
    elif prep.resize_mode == "longest":
        img = _resize_longest_pad(img, size, resample)
    else:
        img = _center_crop(_resize_shortest(img, size, resample), size)
    return _as_rgb8(img)


def _as_rgb8(img: Image.Image) -> np.ndarray:
    if _is_deep(img.mode):  # scaled to 8 bits after resizing: the full-size image never grows
        img = _to_8bit(img)
    # Converted to RGB after resizing, as open_clip does.
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def bounded_model_pixels(img: Image.Image, prep: Preprocess) -> np.ndarray:
    """The model's uint8 input from a loaded image, in the memory of the decoded image plus small
    buffers: no full-size copy is made.

    :func:`to_model_pixels`' reference path copies the whole image up to three times (the EXIF
    rotation, a mode conversion, Pillow's premultiplied alpha), which took a 13000x13000 PNG
    upload to 2.4x its decoded size. Here the crop is folded into the resize (Pillow's ``box``),
    the orientation is applied to the small result, and a mode that needs converting is
    converted and resized horizontally a band of rows at a time. The geometry is open_clip's;
    pixels differ from the reference by rounding (a box pre-reduction, :data:`REDUCING_GAP`, and
    at most one pixel of crop offset on rotated images).
    """
    size = prep.image_size
    resample = _FILTERS.get(prep.interpolation, Image.Resampling.BICUBIC)
    orientation = _orientation(img)
    turned = orientation in (5, 6, 7, 8)
    w, h = img.size[::-1] if turned else img.size  # as displayed
    if prep.resize_mode == "squash":
        out, box = (size, size), (0.0, 0.0, float(w), float(h))
    elif prep.resize_mode == "longest":
        scale = size / max(w, h)
        out, box = (max(1, round(w * scale)), max(1, round(h * scale))), (0.0, 0.0, float(w), float(h))
    else:  # shortest side to size, then the centre crop: only the cropped region is resampled
        new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        sx, sy = w / new_w, h / new_h
        left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
        out, box = (size, size), (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    # Resampled as stored (the box and size turned back), then oriented: the rotation moves only
    # the small result.
    small = _resize_without_copies(img, out[::-1] if turned else out, _stored_box(box, orientation, *img.size),
                                   resample)
    if orientation in _TRANSPOSE:
        small = small.transpose(_TRANSPOSE[orientation])
    if prep.resize_mode == "longest":
        canvas = Image.new(small.mode, (size, size))
        canvas.paste(small, ((size - small.size[0]) // 2, (size - small.size[1]) // 2))
        small = canvas
    return _as_rgb8(small)


def _stored_box(box: tuple[float, float, float, float], orientation: int, w: int, h: int) -> tuple[float, ...]:
    """A box in displayed coordinates as a box in the stored image (``w`` x ``h``, as stored)."""
    to_stored = {2: lambda x, y: (w - x, y), 3: lambda x, y: (w - x, h - y), 4: lambda x, y: (x, h - y),
                 5: lambda x, y: (y, x), 6: lambda x, y: (y, h - x), 7: lambda x, y: (w - y, h - x),
                 8: lambda x, y: (w - y, x)}.get(orientation)
    if to_stored is None:
        return box
    (ax, ay), (bx, by) = to_stored(box[0], box[1]), to_stored(box[2], box[3])
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # a broken EXIF block: the pixels as stored
        return 1
    return value if isinstance(value, int) else 1


def _resize_without_copies(img: Image.Image, out: tuple[int, int], box: tuple[float, float, float, float],
                           resample: int) -> Image.Image:
    """``img`` (converted as the reference path converts it) resampled from ``box`` to ``out``."""
    mode = img.mode
    if mode in ("RGB", "L"):  # Pillow resamples these with small buffers only
        return img.resize(out, resample, box=box, reducing_gap=REDUCING_GAP)
    if _is_deep(mode):  # likewise, but Pillow cannot box-reduce them first
        return img.resize(out, resample, box=box)
    target = "RGBA" if mode == "RGBA" or "transparency" in img.info else "RGB"
    # Pillow resamples RGBA premultiplied (RGBa): done here band by band instead of on a full copy.
    work = "RGBa" if target == "RGBA" else "RGB"
    w, h = img.size
    # Only the pixels the filter reaches from the box are read (its support is at most 3 output
    # pixels, in input pixels when shrinking).
    x0, x1 = _reach(box[0], box[2], out[0], w)
    y0, y1 = _reach(box[1], box[3], out[1], h)
    # Rows first, as Pillow does, a band at a time: each band is converted, resampled along its
    # rows and box-reduced along its columns (by fy, REDUCING_GAP from the output), so only a band
    # and a buffer of about (output width x 3 output heights) are ever held.
    fy = max(1, int((box[3] - box[1]) / out[1] / REDUCING_GAP))
    band = max(fy, BAND_PIXELS // max(x1 - x0, 1) // fy * fy)
    rows = Image.new(work, (out[0], -(-(y1 - y0) // fy)))
    for y in range(y0, y1, band):
        piece = img.crop((x0, y, x1, min(y1, y + band)))
        piece = piece.convert(target) if target != mode else piece
        piece = piece.convert(work) if work != target else piece
        piece = piece.resize((out[0], piece.size[1]), resample, box=(box[0] - x0, 0, box[2] - x0, piece.size[1]),
                             reducing_gap=REDUCING_GAP)
        rows.paste(piece.reduce((1, fy)) if fy > 1 else piece, (0, (y - y0) // fy))
    small = rows.resize(out, resample, box=(0, (box[1] - y0) / fy, out[0], (box[3] - y0) / fy))
    return small.convert(target) if work != target else small


def _reach(start: float, end: float, out_size: int, in_size: int) -> tuple[int, int]:
    """The input pixels a resampling filter reads for the output span ``[start, end)``."""
    margin = 3 * max(1.0, (end - start) / out_size) + 1
    return max(0, math.floor(start - margin)), min(in_size, math.ceil(end + margin))


def _is_deep(mode: str) -> bool:
    """16-bit and 32-bit single-channel modes, which Pillow resizes but cannot convert to RGB well."""
    return mode.startswith("I;16") or mode in ("I", "F")


def _to_8bit(img: Image.Image) -> Image.Image:
    # 16-bit images span 0..65535; 32-bit ones are scaled by their own maximum.
    arr = np.asarray(img, dtype=np.float64)
    hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max(initial=0)), 1.0)
    return Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8), mode="L")


def header_metadata(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageMetadata:
    """Metadata from the header alone (no pixel decoding): for files whose vector is known."""
    return read_metadata(open_image(data, max_pixels))


def decode_for_model(data: bytes, prep: Preprocess, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                     reduce: bool = True) -> tuple[np.ndarray, ImageMetadata]:
    """Bytes -> (uint8 model input, metadata). Raises :class:`ImageDecodeError` on bad input."""
    img = open_image(data, max_pixels)
    try:
        # Metadata inside the budget too: reading a PNG's EXIF decodes the whole image.
        with decode_budget.hold(decode_share(img, prep, reduce)):
            meta = read_metadata(img)
            pixels = to_model_pixels(img, prep, reduce=reduce)
    except (ImageDecodeError, DecodeBusyError):  # busy is not bad input: the caller may retry
        raise
    except Exception as e:  # truncated data, bad codecs, ...
        raise ImageDecodeError(f"cannot decode image ({type(e).__name__}: {e})") from e
    finally:
        release(img)
    return pixels, meta


def release(img: Image.Image) -> None:
    """Free a decoded image now, and give a large one's memory back to the system.

    The C allocator keeps freed memory for reuse by the thread that freed it: a server whose
    threads each decoded one large upload held several decoded images' worth afterwards (3.0 GB
    after three 13000x13000 PNGs). Trimming after a large decode returns it.
    """
    large = img.size[0] * img.size[1] > SMALL_IMAGE_PIXELS
    img.close()
    if large:
        _trim_heap()


_libc: object = None


def _trim_heap() -> None:
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)  # type: ignore[attr-defined]
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        _libc = False
