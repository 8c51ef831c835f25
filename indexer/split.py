"""Sharing JPEG decoding between the CPU workers and the device decoder.

On a GPU, neither decoder alone keeps up with the model on camera photos (16 cores with DCT
scaling: ~150 img/s; nvJPEG: ~500 img/s; ViT-B-32: ~23,000 img/s), and both run at once. The
share of files sent to the device follows the measured costs, so that the CPU workers and the
device finish their parts at the same rate:

* ``t_c``: worker seconds per file decoded on the CPU; ``t_r``: per file only read and hashed;
* ``g``: device seconds per JPEG it decodes; ``m``: device seconds per image the model embeds;
* with ``W`` workers and a device share ``d``, the CPU side sustains ``W / ((1-d) t_c + d t_r)``
  files/s and the device ``1 / (d g + m)``; these are equal at
  ``d* = (t_c - W m) / (W g + t_c - t_r)``, clipped to [0, 1].

Files are offered to the device with probability ``d* / e`` (``e``: the measured fraction of
offered files the device decoder takes; PNGs or progressive JPEGs stay on the CPU either way),
spread evenly by error diffusion rather than drawn at random.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class MovingMean:
    """Exponential moving average (None until the first sample)."""

    def __init__(self, weight: float = 0.05):
        self.weight, self.value = weight, None

    def add(self, x: float, n: int = 1) -> None:
        w = min(1.0, self.weight * n)
        self.value = x if self.value is None else (1 - w) * self.value + w * x


class DecodeSplit:
    """Decides, file by file, whether a JPEG is offered to the device decoder.

    Args:
        workers: decode worker processes.
        start: share offered before both sides have been measured.
        fixed: never adapt (``start`` stays the share); used when all JPEGs go to the device.
    """

    def __init__(self, workers: int, start: float = 0.5, fixed: bool = False):
        self.workers = max(1, workers)
        self.offer = start
        self.fixed = fixed
        self._carry = 0.0
        self._lock = threading.Lock()
        self.cpu_seconds, self.read_seconds = MovingMean(), MovingMean()
        self.device_decode_seconds, self.model_seconds = MovingMean(), MovingMean()
        self.eligible = MovingMean()
        self.device_files = 0
        self.cpu_files = 0

    def __call__(self) -> bool:
        """Whether to offer the next file to the device decoder."""
        with self._lock:
            self._carry += self.offer
            if self._carry >= 1.0:
                self._carry -= 1.0
                return True
            return False

    # -- measurements ------------------------------------------------------------------------
    def observe_file(self, seconds: float, offered: bool, to_device: bool) -> None:
        """A worker's result: its time, whether it was offered, whether the device takes it."""
        with self._lock:
            if to_device:
                self.read_seconds.add(seconds)
                self.device_files += 1
            else:
                self.cpu_seconds.add(seconds)
                self.cpu_files += 1
            if offered:
                self.eligible.add(1.0 if to_device else 0.0)
            self._update()

    def observe_device(self, decoded: int, decode_seconds: float, embedded: int, model_seconds: float) -> None:
        """One batch on the device: JPEGs decoded there and images embedded, with their times."""
        with self._lock:
            if decoded:
                self.device_decode_seconds.add(decode_seconds / decoded, n=max(1, decoded // 16))
            if embedded:
                self.model_seconds.add(model_seconds / embedded, n=max(1, embedded // 16))
            self._update()

    def device_share(self) -> float | None:
        """The share of files the device should decode (None until measured)."""
        t_c, t_r = self.cpu_seconds.value, self.read_seconds.value or 0.0
        g, m = self.device_decode_seconds.value, self.model_seconds.value
        if t_c is None or g is None or m is None:
            return None
        w = self.workers
        denominator = w * g + t_c - t_r
        if denominator <= 0:
            return 1.0
        return min(1.0, max(0.0, (t_c - w * m) / denominator))

    def _update(self) -> None:
        if self.fixed:
            return
        share = self.device_share()
        if share is None:
            return
        eligible = self.eligible.value or 1.0
        self.offer = min(1.0, share / max(eligible, 1e-3))

    def summary(self) -> str:
        """One line for the log: where files were decoded and the measured costs."""
        def ms(v):
            return "?" if v.value is None else f"{v.value * 1e3:.2f} ms"

        return (f"decoded {self.device_files} files on the device, {self.cpu_files} in workers "
                f"(offer share {self.offer:.2f}; worker decode {ms(self.cpu_seconds)}, read {ms(self.read_seconds)}, "
                f"device decode {ms(self.device_decode_seconds)}, model {ms(self.model_seconds)} per image)")
