"""Thumbnails of indexed images, cached on disk in the index directory.

A thumbnail is the image fitted into ``size`` x ``size`` pixels with its EXIF orientation applied,
saved as JPEG. The cache key is the indexed content hash plus the file's current size and mtime,
so a file re-indexed after a change gets a new thumbnail (and a new ETag); old ones are simply
never asked for again. JPEGs are decoded at reduced size (DCT scaling), which is what makes
a 12 MP photo's first thumbnail cheap.

A thumbnail is only ever made of the indexed bytes: before one is made, the file's bytes are checked
against the indexed content hash. Since it was indexed the path may have become a symlink to some
other picture (a private one outside the indexed folders) or been replaced by another file; that
gets :class:`~searchlib.errors.ImageNotFoundError`, never a picture of something else. For an
image the check hashes the bytes just read (SHA-256: ~8 ms for a 5 MB photo); a video is hashed
once and remembered by (device, inode, size, mtime, ctime), so its scenes' thumbnails do not read
it again.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from .checked import CheckedFiles
from .config import THUMBNAILS_DIR
from .embedding import read_image_file
from .errors import DecodeBusyError, ImageDecodeError, ImageNotFoundError, QueryError
from .imaging import DEFAULT_MAX_PIXELS, _is_deep, _to_8bit, decode_budget, held_bytes, open_image, release
from .media import is_video_name
from .media.raw import is_raw_name, read_raw
from .records import content_hash as hash_of_bytes
from .tempfiles import temp_beside

#: Sizes a caller may ask for (a fixed set keeps the cache small and URLs cacheable).
SIZES = (128, 256, 512, 1024)
QUALITY = 85


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail file, the tag that changes whenever its content would, and its bytes when they
    were just made (so a server sends them without reading the file back)."""

    path: Path
    etag: str
    data: bytes | None = None


def choose_size(size: int) -> int:
    """The smallest offered size that is at least ``size`` (the largest if none is)."""
    if size < 1:
        raise QueryError(f"a thumbnail size must be at least 1 pixel, not {size}")
    return next((s for s in SIZES if s >= size), SIZES[-1])


def thumbnail(directory: Path, path: str, content_hash: str, size: int,
              max_pixels: int | None = None, at: float | None = None) -> Thumbnail:
    """The cached thumbnail of the file at ``path`` (made now if missing); of a video, the frame
    shown at ``at`` seconds (a segment's middle).

    Raises:
        ImageDecodeError: the file is gone, unreadable or no longer an image.
    """
    size = choose_size(size)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ImageDecodeError(f"{path} cannot be read: {e.strerror or e}") from e
    moment = "" if at is None else f":{at:.3f}"
    key = hashlib.sha256(f"{content_hash}:{st.st_size}:{st.st_mtime_ns}:{size}{moment}".encode()).hexdigest()[:32]
    folder = directory / THUMBNAILS_DIR / str(size)
    target = folder / f"{key}.jpg"
    if target.is_file():
        return Thumbnail(target, key)
    if is_video_name(path):
        _check_video(path, content_hash)
        data = _video_thumbnail(path, at or 0.0, size)
    else:
        original = read_image_file(path)
        if content_hash and hash_of_bytes(original) != content_hash:
            raise _not_indexed(path)
        data = make_thumbnail(original, size, max_pixels, name=path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(target)
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError:  # a read-only index
        return _outside_index(key, data)
    return Thumbnail(target, key, data)


def _not_indexed(path: str) -> ImageNotFoundError:
    return ImageNotFoundError(f"{path} is not the file indexed any more (it changed or was replaced); "
                              "run 'searchlib index' to update")


#: Videos whose bytes matched their indexed hash (hashed again only once changed).
_checked_videos = CheckedFiles(1024)


def _check_video(path: str, digest: str) -> None:
    """Raise unless the video at ``path`` is still the one indexed with ``digest``."""
    if not digest:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ImageDecodeError(f"{path} cannot be read: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        # (not a FIFO: it must not be read)
        if not stat.S_ISREG(st.st_mode) or not _checked_videos.same_bytes(fd, st, path, digest):
            raise _not_indexed(path)
    except OSError as e:
        raise ImageDecodeError(f"{path} cannot be read: {e.strerror or e}") from e
    finally:
        os.close(fd)


def _video_thumbnail(path: str, at: float, size: int) -> bytes:
    from .media.video import frame_at

    out = io.BytesIO()
    frame_at(path, at, size).convert("RGB").save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _outside_index(key: str, data: bytes) -> Thumbnail:
    """A thumbnail that cannot be cached in the index (read-only): kept in a per-user temp folder."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"searchlib-thumbnails-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    target = folder / f"{key}.jpg"
    tmp = temp_beside(target)  # other threads may read or write it at the same moment
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return Thumbnail(target, key, data)


def make_thumbnail(data: bytes, size: int, max_pixels: int | None = None, name: str | None = None) -> bytes:
    """JPEG bytes of the image fitted into ``size`` x ``size``, EXIF orientation applied.

    ``name`` (the file's name) sends a RAW file to LibRaw: its embedded preview when that covers
    ``size``, else a half-size demosaic (:func:`searchlib.media.raw.read_raw`).

    Raises:
        ImageDecodeError: not an image, or larger than the decode guard allows.
    """
    if name is not None and is_raw_name(name):
        picture = read_raw(data, size, max_pixels or DEFAULT_MAX_PIXELS, os.path.splitext(name)[1])
        img = picture.image  # type: ignore[union-attr]  (pixels=True gives a RawPicture)
    else:
        img = open_image(data, max_pixels) if max_pixels else open_image(data)
    try:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale when that still covers it
        img.seek(0)
        # Held against the process's decode budget: a page of huge photos takes turns, not memory.
        # The share counts the decoded image and up to two full-size copies (rotation, alpha).
        with decode_budget.hold(held_bytes(img) + 8 * img.size[0] * img.size[1]):
            return _thumbnail_bytes(img, size)
    except (ImageDecodeError, DecodeBusyError):  # busy is not bad input: the caller may retry
        raise
    except Exception as e:
        raise ImageDecodeError(f"cannot make a thumbnail ({type(e).__name__}: {e})") from e
    finally:
        release(img)


def _thumbnail_bytes(img: Image.Image, size: int) -> bytes:
    img.load()
    if (img.getexif().get(0x0112) or 1) != 1:  # only rotate what needs it (a copy costs ~0.5 ms)
        img = ImageOps.exif_transpose(img)
    if _is_deep(img.mode):  # 16-bit and float images: fit first, then scale to 8 bits
        img.thumbnail((size, size), Image.Resampling.BILINEAR)
        img = _to_8bit(img)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("RGBA", "LA", "PA") else "RGB")
        if img.mode == "RGBA":  # flatten on white: JPEG has no alpha
            canvas = Image.new("RGB", img.size, (255, 255, 255))
            canvas.paste(img, mask=img.getchannel("A"))
            img = canvas
    img.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=QUALITY, optimize=False)
    return out.getvalue()
