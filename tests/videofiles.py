"""Videos made for tests with PyAV: scenes of known coloured shapes, and damaged files."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from searchlib.synthetic import make_sample


def scene_picture(color: str, shape: str, seed: int, size: int = 128) -> Image.Image:
    """One generated picture of a ``color`` ``shape`` (what the bundled model finds)."""
    return make_sample(random.Random(seed), size, count=1, shape=shape, color=color, artefacts=False).image


def write_video(path: Path, scenes: list[tuple[Image.Image, float]], fps: int = 8, codec: str = "mpeg4",
                jitter: bool = True) -> Path:
    """Write an MP4 (or whatever ``path``'s ending says) showing each picture for its seconds.

    ``jitter`` adds a little noise per frame, so a scene is not one repeated frame (as a camera's
    never is) while staying far below a scene cut.
    """
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        first = scenes[0][0]
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        index = 0
        for picture, seconds in scenes:
            base = np.asarray(picture.convert("RGB"), dtype=np.int16)
            for _ in range(round(seconds * fps)):
                pixels = base
                if jitter:
                    pixels = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255)
                frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


#: The scenes of :func:`three_scene_video`: (colour, shape, seconds).
THREE_SCENES = [("red", "circle", 4.0), ("blue", "star", 4.0), ("green", "tree", 4.0)]


def three_scene_video(path: Path, seed: int = 1) -> tuple[Path, list[tuple[str, str, float, float]]]:
    """A 12-second video of three scenes; returns it with ``(colour, shape, start, end)`` per scene."""
    scenes, truth, t = [], [], 0.0
    for i, (color, shape, seconds) in enumerate(THREE_SCENES):
        scenes.append((scene_picture(color, shape, seed + i), seconds))
        truth.append((color, shape, t, t + seconds))
        t += seconds
    return write_video(path, scenes), truth


def set_display_rotation(path: Path, quarter_turns_clockwise: int) -> Path:
    """Give an MP4 the display matrix a phone writes for a picture stored on its side (in the video
    track's ``tkhd`` box), as iPhones and Android cameras do for portrait videos: players show the
    frames turned ``quarter_turns_clockwise`` times 90 degrees clockwise."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, "no track header"
    matrix_at = at + 4 + 4 + (32 if data[at + 4] == 1 else 20) + 8 + 8
    one, minus = 0x10000, (-0x10000) & 0xFFFFFFFF
    a, b, c, d = {1: (0, one, minus, 0), 2: (minus, 0, 0, minus), 3: (0, minus, one, 0)}[quarter_turns_clockwise % 4]
    data[matrix_at:matrix_at + 36] = struct.pack(">9I", a, b, 0, c, d, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path
