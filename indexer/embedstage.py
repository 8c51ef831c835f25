"""The device stage: decoding offered JPEGs on the device and running the model, on a thread.

The main thread keeps collecting files from the decode workers and handing batches to the catalog
writer while this thread keeps the device busy; torch and onnxruntime release the GIL while they
compute, so the two overlap. At most ``depth`` batches wait, which bounds memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from searchlib.devicedecode import DeviceJpegDecoder
from searchlib.embedding import Embedder
from searchlib.errors import ImageDecodeError
from searchlib.imaging import decode_for_model

from .pipeline import Decoded, Failed
from .split import DecodeSplit

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """A batch back from the device: the files embedded (rows of ``vectors``) and those that failed."""

    items: list[Decoded]
    vectors: np.ndarray
    failures: list[Failed] = field(default_factory=list)


class EmbedStage:
    """Embeds batches of :class:`Decoded` files on a thread of its own, in order.

    Args:
        embedder: the model.
        decoder: decodes files that arrive as JPEG bytes (``Decoded.encoded``); None when every
            file arrives as pixels.
        split: told the measured device costs, so the CPU/device decode split can follow them.
        depth: batches that may wait for the device before :meth:`submit` blocks (one is
            enough to keep it busy; each holds up to a batch of 12 MP files' bytes).
    """

    def __init__(self, embedder: Embedder, decoder: DeviceJpegDecoder | None = None,
                 split: DecodeSplit | None = None, depth: int = 1):
        self.embedder, self.decoder, self.split = embedder, decoder, split
        self._in: queue.Queue = queue.Queue(maxsize=depth)
        self._out: queue.Queue = queue.Queue()
        self._submitted = 0
        self._returned = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="searchlib-device", daemon=True)
        self._thread.start()

    # -- main thread -------------------------------------------------------------------------
    def submit(self, batch: list[Decoded]) -> None:
        """Queue a batch (blocks while ``depth`` batches already wait)."""
        self._raise_if_failed()
        self._in.put(batch)
        self._submitted += 1

    def collect(self, wait: bool = False) -> list[Embedded]:
        """Batches finished so far, in submission order (all of them if ``wait``)."""
        done = []
        while self._returned < self._submitted:
            try:
                item = self._out.get(block=wait)
            except queue.Empty:
                break
            self._returned += 1
            if item is not None:
                done.append(item)
        self._raise_if_failed()
        return done

    def close(self) -> None:
        """Stop the thread (after the batches already queued)."""
        self._in.put(None)
        self._thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    # -- device thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        while (batch := self._in.get()) is not None:
            result = None
            if self._error is None:  # after a failure, only drain: the main thread re-raises
                try:
                    result = self._embed(batch)
                except BaseException as e:
                    self._error = e
            self._out.put(result)

    def _sync(self) -> None:
        if self.embedder.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def _embed(self, batch: list[Decoded]) -> Embedded:
        failures: list[Failed] = []
        encoded = [d for d in batch if d.encoded is not None]
        device_items: list[Decoded] = []
        device_pixels = None
        decode_seconds = 0.0
        if encoded:
            started = time.perf_counter()
            if self.decoder is None:
                ok, failed = [], {i: "no device decoder" for i in range(len(encoded))}
            else:
                result = self.decoder.decode([d.encoded for d in encoded],
                                             [d.metadata.get("orientation") for d in encoded])
                ok, failed, device_pixels = result.ok, result.failed, result.pixels
                self._sync()
            decode_seconds = time.perf_counter() - started
            device_items = [encoded[i] for i in ok]
            for i, reason in failed.items():
                d = encoded[i]  # the device decoder refused it: Pillow decodes it here instead
                log.debug("%s: %s; decoding on the CPU", d.path, reason)
                try:
                    d.pixels = decode_for_model(d.encoded, self.embedder.preprocess)[0]
                except ImageDecodeError as e:
                    failures.append(Failed(d.path, str(e)))
            for d in encoded:
                d.encoded = None  # the bytes are no longer needed; rows keep only metadata
        host_items = [d for d in batch if d.pixels is not None]
        started = time.perf_counter()
        vectors = self.embedder.embed_mixed(device_pixels if device_items else None,
                                            [d.pixels for d in host_items])
        model_seconds = time.perf_counter() - started
        for d in host_items:
            d.pixels = None
        if self.split is not None:
            self.split.observe_device(len(device_items), decode_seconds, len(vectors), model_seconds)
        return Embedded(device_items + host_items, vectors, failures)
