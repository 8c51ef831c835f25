"""Reading the words written in a photo (signs, screenshots, receipts), offline.

The engine is RapidOCR on ONNX Runtime (``rapidocr-onnxruntime``): its wheel carries the detection,
direction and recognition models, so nothing is downloaded at run time, and it reads Latin and CJK
text. Measured against Tesseract on generated signs, screenshots and receipts (see
benchmarks/bench_ocr.py and RESULTS.md).

Cost is the detector, which runs on the whole image: a photo is read at most ``READ_SIDE`` pixels
on its long side, and a cheap first pass of the same detector at ``PROBE_SIDE`` decides whether a
photo has text at all, so that the many photos without words pay only for that pass.

Text is stored as read (for display) and folded (:func:`fold`: case and accents removed) for
matching, so "cafe" finds "CAFÉ".
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError

log = logging.getLogger(__name__)

#: The long side a photo is read at: large enough for a sign across a street photo, small enough
#: that detection stays ~0.1-0.3 s per photo on one core.
READ_SIDE = 960
#: The long side of the first, cheap pass that decides whether there is text at all.
PROBE_SIDE = 320
#: Lines read with less confidence are dropped (noise on textures reads as short garbage).
MIN_CONFIDENCE = 0.6
#: At most this many characters of text are kept per photo (a screenshot of a page is enough).
MAX_CHARS = 4000


def fold(text: str) -> str:
    """``text`` for matching: compatibility-decomposed, accents removed, case-folded, spaces
    collapsed. The one rule, used for stored text and for query words alike."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def words_of(query: str) -> list[str]:
    """The folded words of a query that text matching uses (two characters or more)."""
    return [w for w in (fold(part.strip(".,;:!?\"'()[]{}")) for part in query.split()) if len(w) >= 2]


def check_available() -> None:
    """Raise :class:`ConfigError` with the fix when the OCR engine is not installed (checked
    before a run starts, so workers never discover it file by file)."""
    import importlib.util

    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        raise ConfigError("reading text needs rapidocr-onnxruntime: pip install rapidocr-onnxruntime "
                          "(the README's install command includes it)")


class TextReader:
    """Reads text in images; the engine loads on first use (once per process).

    Raises:
        ConfigError: rapidocr-onnxruntime is not installed.
    """

    def __init__(self, probe: bool = True):
        self.probe = probe
        self._engine: Any = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as e:
                    raise ConfigError("reading text needs rapidocr-onnxruntime: pip install rapidocr-onnxruntime "
                                      "(the README's install command includes it)") from e
                # Its own logger prints every call at INFO; the library logs, it does not print.
                logging.getLogger("RapidOCR").setLevel(logging.WARNING)
                self._engine = RapidOCR(det_limit_side_len=READ_SIDE, det_limit_type="max", print_verbose=False)
            return self._engine

    def has_text(self, img: Image.Image) -> bool:
        """Whether the detector finds any text region in a small copy of ``img`` (the cheap pass)."""
        engine = self._load()
        small = _fit(img, PROBE_SIDE)
        boxes, _ = engine(np.asarray(small), use_det=True, use_cls=False, use_rec=False)
        return bool(boxes)

    def read(self, img: Image.Image) -> str | None:
        """The text in ``img``, one line per detected line in reading order, or None if there is none."""
        if self.probe and not self.has_text(img):
            return None
        engine = self._load()
        result, _ = engine(np.asarray(_fit(img, READ_SIDE)))
        if not result:
            return None
        lines = [str(text).strip() for _box, text, score in result if float(score) >= MIN_CONFIDENCE]
        joined = "\n".join(line for line in lines if line)[:MAX_CHARS]
        return joined or None


def _fit(img: Image.Image, side: int) -> Image.Image:
    """An RGB copy of ``img`` with its long side at most ``side``."""
    img = img.convert("RGB") if img.mode != "RGB" else img
    scale = side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return img


_shared: TextReader | None = None


def shared_reader() -> TextReader:
    """This process's reader (decode workers each load the engine once)."""
    global _shared
    if _shared is None:
        _shared = TextReader()
    return _shared
