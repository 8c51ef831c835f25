"""Videos as segments: decode small frames with PyAV, cut at scene changes, one frame per segment.

A video becomes a few items, each a time range ``[start, end)`` in seconds with the uint8 model
input of one frame from its middle. Cuts come from a content detector on frames decoded at a
small size (the mean absolute difference of HSV pixels between consecutive samples, as
PySceneDetect's ``ContentDetector`` measures it, on 64-pixel-wide frames sampled at
:data:`SAMPLE_FPS`); a scene longer than :data:`MAX_SEGMENT_SECONDS` is cut into pieces of that
length, so a long scene is seen every few seconds; neighbouring pieces that look alike (a static
video) are merged back into one segment.

Cost is bounded: above :data:`KEYFRAMES_ONLY_ABOVE` seconds, or :data:`FULL_DECODE_PIXEL_SECONDS`
pixel-seconds, only keyframes are decoded, a video
keeps at most :data:`MAX_SEGMENTS` segments, and decoding stops after :data:`TIME_BUDGET` seconds
(what was decoded so far is indexed, with a warning), inside the pipeline's per-file time limit.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
from PIL import Image

from ..errors import ImageDecodeError
from ..imaging import Preprocess, to_model_pixels
from ..records import ImageMetadata, Segment

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp"})

#: Frames looked at per second of video for scene detection.
SAMPLE_FPS = 4.0
#: Width of the frames the detector compares (height follows the aspect ratio).
DETECT_WIDTH = 64
#: Mean absolute HSV difference (0-255) between consecutive samples that counts as a cut.
#: PySceneDetect's ContentDetector uses 27 on full frames; on 64-pixel frames the noise within a
#: scene measured below 6 and a cut between two pictures sharing a background 20 (generated
#: scenes, tests/videofiles.py), so the line sits between them.
CUT_THRESHOLD = 15.0
#: A scene shorter than this is not cut again (flashes, fades).
MIN_SCENE_SECONDS = 0.5
#: A scene longer than this is cut into pieces of this length: one vector every N seconds.
MAX_SEGMENT_SECONDS = 10.0
#: Neighbouring pieces of one scene whose frames differ by less than this are one segment.
STATIC_THRESHOLD = 6.0
#: Above this length (seconds) only keyframes are decoded, whatever the frame size.
KEYFRAMES_ONLY_ABOVE = 600.0
#: ... and above this many pixel-seconds (width x height x duration) too. Decoding every frame of
#: a 480x360 H.264 video ran at 28 s of video per second on a busy 2-core machine (about 5 M
#: pixel-seconds per second; benchmarks/RESULTS.md, videos), so 1e8 keeps a full decode near 20 s,
#: half the time budget: 1080p is read whole up to ~50 s, 360p up to ~10 min, 4K up to ~12 s.
#: Keyframes alone decoded 4-4.6x faster.
FULL_DECODE_PIXEL_SECONDS = 1e8
#: Segments kept per video at most: a long video's pieces grow to fit.
MAX_SEGMENTS = 720
#: Seconds of decoding a video may take; what was decoded by then is indexed.
TIME_BUDGET = 45.0
#: Longer than this (seconds) is not a believable video: a failure, not hours of decoding.
MAX_DURATION = 48 * 3600.0


def is_video_name(name: str) -> bool:
    """Whether a file name has a video ending the indexer takes."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoItems:
    """What a video gives the index: its metadata, its segments, and one model input per segment
    (``pixels[i]`` is a frame from inside ``segments[i]``)."""

    metadata: ImageMetadata
    segments: tuple[Segment, ...]
    pixels: np.ndarray  # (n, S, S, 3) uint8


@dataclass
class _Piece:
    """A run of samples with no cut inside: its start, the detector's view of its first and last
    sample, and the frames that may become its picture (thinned as it grows, so a long piece of a
    4K video holds a few frames, not dozens)."""

    start: float
    first: np.ndarray
    last: np.ndarray
    frames: list  # (time, av.VideoFrame), undecoded to RGB until chosen
    last_time: float
    end: float = 0.0
    picture: tuple | None = None  # (time, model input) chosen when the piece closes

    def add(self, t: float, small: np.ndarray, frame) -> None:
        self.last, self.last_time = small, t
        self.frames.append((t, frame))
        if len(self.frames) > KEPT_FRAMES:
            self.frames = self.frames[::2]

    def close(self, end: float, to_pixels) -> None:
        """End the piece at ``end``: its picture is the kept frame nearest its middle, made into
        the model's input now (a few hundred kB), so no decoded frame outlives its piece."""
        self.end = end
        middle = (self.start + end) / 2
        t, frame = min(self.frames, key=lambda tf: abs(tf[0] - middle))
        self.picture = (t, to_pixels(frame))
        self.frames = []


#: Frames a piece keeps as candidates for its picture.
KEPT_FRAMES = 12


def _hsv(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("HSV"), dtype=np.float32)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """The content detector's score: mean absolute difference over the H, S and V channels
    (hue wraps around)."""
    d = np.abs(a - b)
    d[..., 0] = np.minimum(d[..., 0], 256 - d[..., 0])
    return float(d.mean())


@contextmanager
def _open(source):
    """A PyAV container on ``source``: a path (opened here as a regular file, without blocking, so
    a FIFO cannot hang a worker, and any file name works, not only UTF-8 ones) or a file object."""
    import av

    handle = _open_regular(source) if isinstance(source, (str, bytes, os.PathLike)) else None
    try:
        try:
            container = av.open(handle or source, metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise ImageDecodeError(f"not a readable video ({_reason(e)})") from e
        with container:
            yield container
    finally:
        if handle is not None:
            handle.close()


def _open_regular(path):
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ImageDecodeError(f"cannot read: {e.strerror or e}") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageDecodeError("not a regular file")
    return os.fdopen(fd, "rb")


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _taken_at(tags: dict) -> datetime | None:
    value = tags.get("creation_time") or tags.get("com.apple.quicktime.creationdate")
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is not None:  # stored dates are naive local time, as EXIF's are
        when = when.astimezone().replace(tzinfo=None)
    if when.year < 1971:  # an unset QuickTime date (1904 or 1970)
        return None
    return when


_ISO6709 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _location(tags: dict) -> tuple[float | None, float | None]:
    value = tags.get("location") or tags.get("com.apple.quicktime.location.ISO6709")
    m = _ISO6709.match(str(value or ""))
    if not m:
        return None, None
    lat, lon = float(m.group(1)), float(m.group(2))
    return (lat, lon) if abs(lat) <= 90 and abs(lon) <= 180 else (None, None)


def _metadata(container, stream, width: int, height: int, name: str) -> ImageMetadata:
    tags = {**{k.lower(): v for k, v in (container.metadata or {}).items()},
            **{k.lower(): v for k, v in (stream.metadata or {}).items()}}
    lat, lon = _location(tags)
    # The container's own name is a family ("mov,mp4,m4a,3gp,..."): the file's ending says more.
    fmt = os.path.splitext(name)[1].lstrip(".").upper() or (container.format.name or "video").split(",")[0].upper()
    return ImageMetadata(width=width, height=height, format=fmt, taken_at=_taken_at(tags),
                         camera_make=tags.get("com.apple.quicktime.make") or tags.get("make"),
                         camera_model=tags.get("com.apple.quicktime.model") or tags.get("model"),
                         gps_lat=lat, gps_lon=lon)


def video_metadata(source, name: str, max_pixels: int | None = None) -> ImageMetadata:
    """A video's metadata from its container, without decoding frames.

    Raises:
        ImageDecodeError: not a video searchlib can read.
    """
    with _open(source) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(width, height, max_pixels)
        return _metadata(container, stream, width, height, name)


def _video_stream(container):
    if not container.streams.video:
        raise ImageDecodeError("no video stream in the file")
    return container.streams.video[0]


#: PIL's exact quarter turns, counterclockwise, by the angle a frame's display matrix asks for.
_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def upright(img: Image.Image, rotation: float | None) -> Image.Image:
    """``img`` turned as the video's display matrix says (``frame.rotation``: degrees
    counterclockwise; a phone's portrait video is stored landscape with -90), as players show it."""
    turn = _TURNS.get(round((rotation or 0) / 90) * 90 % 360)
    return img.transpose(turn) if turn is not None else img


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError("video has no frame size")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(f"video frames of {width}x{height} exceed the size limit")


def decode_video(source, name: str, prep: Preprocess, max_pixels: int | None = None,
                 time_budget: float = TIME_BUDGET) -> VideoItems:
    """Decode a video (a path or a file object; ``name`` is its file name) into segments with one
    model input each.

    Raises:
        ImageDecodeError: not a video, no decodable frame, an absurd size or duration; one line.
    """
    import av
    from av.video.reformatter import VideoReformatter

    started = time.monotonic()
    with _open(source) as container:
        stream = _video_stream(container)
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        _check_size(width, height, max_pixels)
        duration = _duration(container, stream)
        if duration > MAX_DURATION:
            raise ImageDecodeError(f"video claims to last {duration / 3600:.0f} hours; not indexed")
        meta = _metadata(container, stream, width, height, name)
        keyframes_only = keyframes_only_for(width, height, duration)
        if keyframes_only:
            ctx.skip_frame = "NONKEY"
        ctx.thread_type = "AUTO"
        # Sample often enough to see cuts, but never more than the segments can use.
        step = max(1.0 / SAMPLE_FPS, duration / (MAX_SEGMENTS * 4) if duration else 0.0)
        detect_h = max(2, round(DETECT_WIDTH * height / width / 2) * 2)
        scale = prep.image_size / min(width, height)
        model_w, model_h = (max(prep.image_size, round(width * scale)), max(prep.image_size, round(height * scale)))
        # One scaler for every sample: a frame's own to_image() builds a new one each call (10x
        # slower here, and most of the cost of segmenting).
        detect, scaler = VideoReformatter(), VideoReformatter()

        def to_pixels(frame) -> np.ndarray:
            small = scaler.reformat(frame, width=model_w, height=model_h, format="rgb24", interpolation="AREA")
            # Upright, as shown: a portrait phone video is stored on its side, and CLIP reads
            # sideways pictures badly.
            return to_model_pixels(upright(Image.fromarray(small.to_ndarray()), frame.rotation), prep)

        pieces: list[_Piece] = []
        longest = max(MAX_SEGMENT_SECONDS, duration / MAX_SEGMENTS)
        next_time, last_time, cut_short = 0.0, 0.0, False
        sideways: bool | None = None
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time)
                if sideways is None:  # shown turned a quarter: the picture's shape is the other way
                    sideways = round((frame.rotation or 0) / 90) % 2 == 1
                last_time = max(last_time, t)
                if t + 1e-6 < next_time:
                    continue
                next_time = t + step
                small = _hsv(Image.fromarray(detect.reformat(frame, width=DETECT_WIDTH, height=detect_h,
                                                             format="rgb24", interpolation="AREA").to_ndarray()))
                piece = pieces[-1] if pieces else None
                if piece is None or _starts_new(piece, t, small, keyframes_only, longest):
                    if piece is not None:
                        piece.close(t, to_pixels)
                    pieces.append(_Piece(0.0 if piece is None else t, small, small, [], t))
                pieces[-1].add(t, small, frame)
                if time.monotonic() - started > time_budget:
                    cut_short = True
                    break
        except av.error.FFmpegError as e:
            if not pieces:
                raise ImageDecodeError(f"cannot decode video ({_reason(e)})") from e
            log.warning("video damaged after %.1fs (%s): indexing what was decoded", last_time, _reason(e))
        except MemoryError as e:
            raise ImageDecodeError("video too large to decode") from e
        if not pieces:
            raise ImageDecodeError("no video frame could be decoded (truncated or empty)")
        if cut_short:
            log.warning("video decoding stopped at %.0fs of %.0fs (time limit %.0fs)", last_time, duration,
                        time_budget)
            end = last_time + step
        else:
            end = max(duration, last_time + step) if duration else last_time + step
        pieces[-1].close(end, to_pixels)
        merged = _merge_static(pieces)
        segments = tuple(Segment(i, round(p.start, 3), round(p.end, 3), round(end, 3)) for i, p in enumerate(merged))
        pixels = np.stack([p.picture[1] for p in merged])
    if sideways:
        meta = replace(meta, width=meta.height, height=meta.width)
    return VideoItems(meta, segments, pixels)


def keyframes_only_for(width: int, height: int, duration: float) -> bool:
    """Whether a video this size and length is read by its keyframes only (bounded cost)."""
    return duration > KEYFRAMES_ONLY_ABOVE or width * height * duration > FULL_DECODE_PIXEL_SECONDS


def _starts_new(piece: _Piece, t: float, small: np.ndarray, keyframes_only: bool, longest: float) -> bool:
    """Whether the sample at ``t`` begins a new piece: a cut (not within a flash of the last one),
    or the piece is full."""
    if _difference(piece.last, small) >= CUT_THRESHOLD and (keyframes_only or t - piece.start >= MIN_SCENE_SECONDS):
        return True
    return t - piece.start >= longest


def _merge_static(pieces: list[_Piece]) -> list[_Piece]:
    """Join neighbouring pieces that look alike (a static video is one segment); a joined
    segment's picture is the pieces' picture nearest its middle."""
    merged: list[_Piece] = []
    for piece in pieces:
        prev = merged[-1] if merged else None
        if prev is not None and _difference(prev.last, piece.first) < STATIC_THRESHOLD \
                and _difference(prev.first, piece.last) < STATIC_THRESHOLD:
            candidates = [prev.picture, piece.picture]
            middle = (prev.start + piece.end) / 2
            merged[-1] = replace(prev, end=piece.end, last=piece.last,
                                 picture=min(candidates, key=lambda tf: abs(tf[0] - middle)))
        else:
            merged.append(piece)
    return merged


def frame_at(source, seconds: float, side: int) -> Image.Image:
    """The frame shown at ``seconds`` (the first decodable one at or after the keyframe before it),
    scaled so its longer side is at most ``side``: a segment's thumbnail.

    Raises:
        ImageDecodeError: the video cannot be read there.
    """
    import av

    with _open(source) as container:
        stream = _video_stream(container)
        try:
            if seconds > 0 and stream.time_base:
                container.seek(int(seconds / stream.time_base), stream=stream, backward=True)
            best = None
            for frame in container.decode(stream):
                best = frame
                if frame.time is None or frame.time + 1e-6 >= seconds:
                    break
        except av.error.FFmpegError as e:
            if best is None:
                raise ImageDecodeError(f"cannot decode video ({_reason(e)})") from e
        if best is None:
            raise ImageDecodeError("no video frame could be decoded")
        w, h = best.width, best.height
        scale = min(1.0, side / max(w, h))
        return upright(best.to_image(width=max(2, math.floor(w * scale)), height=max(2, math.floor(h * scale))),
                       best.rotation)

