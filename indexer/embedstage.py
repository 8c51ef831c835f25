"""The device stage: decoding JPEGs on the device and running the model, on a thread.

The main thread keeps collecting files from the decode workers and handing batches to the catalog
writer while this thread keeps the device busy; torch and onnxruntime release the GIL while they
compute, so the two overlap. At most ``depth`` batches wait, which bounds memory.

Files marked :attr:`~indexer.pipeline.Decoded.for_device` are read here, again: the worker that
hashed them moments ago left them in the page cache, and reading 4 MB from there costs ~0.2 ms
where receiving it through the pool's pipe cost ~9 ms (measured here: 5,100 re-reads/s against 112
pipe transfers/s). If the file changed since the worker hashed it (size or mtime differ), the
bytes read here are hashed again, so the row always describes what was embedded.

Records are never changed in place: what comes back is new :class:`Decoded` records (without
pixels), made with ``dataclasses.replace``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from searchlib.devicedecode import DeviceJpegDecoder
from searchlib.embedding import Embedder
from searchlib.errors import ImageDecodeError
from searchlib.imaging import decode_for_model, header_metadata
from searchlib.records import content_hash

from .pipeline import Decoded, Failed, read_file
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
        decoder: decodes the files marked ``for_device``; None when every file arrives as pixels.
        split: told the measured device costs, so the CPU/device decode split can follow them.
        max_pixels: the size limit checked again on a file that changed after its worker saw it.
        depth: batches that may wait for the device before :meth:`submit` blocks (one is
            enough to keep it busy; each holds up to a batch of 12 MP files' bytes).
    """

    def __init__(self, embedder: Embedder, decoder: DeviceJpegDecoder | None = None,
                 split: DecodeSplit | None = None, max_pixels: int | None = None, depth: int = 1):
        self.embedder, self.decoder, self.split = embedder, decoder, split
        self.max_pixels = max_pixels
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

    def _read(self, d: Decoded) -> tuple[bytes, Decoded]:
        """The file's bytes, and its record: ``d`` if unchanged since its worker hashed it, else a
        new record describing the bytes read now."""
        data, st = read_file(d.path)
        if (len(data), st.st_mtime_ns) != (d.size, d.mtime_ns):
            log.info("%s changed while being indexed; storing it as read now", d.path)
            d = replace(d, metadata=header_metadata(data, self.max_pixels), size=len(data),
                        mtime_ns=st.st_mtime_ns, content_hash=content_hash(data))
        return data, d

    def _decode_offered(self, offered: list[Decoded], failures: list[Failed]):
        """Read and decode files marked ``for_device``: ``(device items, their pixels on the device,
        host items with Pillow pixels)``. Files the device decoder refuses are decoded by Pillow."""
        readable: list[Decoded] = []
        datas: list[bytes] = []
        for d in offered:
            try:
                data, current = self._read(d)
            except ImageDecodeError as e:
                failures.append(Failed(d.path, str(e), d.size, d.mtime_ns))
                continue
            except OSError as e:  # gone or unreadable since its worker read it
                failures.append(Failed(d.path, f"cannot read: {e.strerror or e}", d.size, d.mtime_ns))
                continue
            datas.append(data)
            readable.append(current)
        if self.decoder is None:
            ok, failed, pixels = [], {i: "no device decoder" for i in range(len(readable))}, None
        else:
            result = self.decoder.decode(datas, [d.metadata.orientation for d in readable])
            ok, failed, pixels = result.ok, result.failed, result.pixels
            self._sync()
        host: list[Decoded] = []
        for i, reason in failed.items():
            d = readable[i]
            log.debug("%s: %s; decoding on the CPU", d.path, reason)
            try:
                host.append(replace(d, pixels=decode_for_model(datas[i], self.embedder.preprocess,
                                                               self.max_pixels)[0]))
            except ImageDecodeError as e:
                failures.append(Failed(d.path, str(e), d.size, d.mtime_ns))
        return [readable[i] for i in ok], pixels, host

    def _embed(self, batch: list[Decoded]) -> Embedded:
        failures: list[Failed] = []
        device_items: list[Decoded] = []
        device_pixels = None
        decode_seconds = 0.0
        host_items = [d for d in batch if d.pixels is not None]
        offered = [d for d in batch if d.for_device]
        if offered:
            started = time.perf_counter()
            device_items, device_pixels, refused = self._decode_offered(offered, failures)
            host_items += refused
            decode_seconds = time.perf_counter() - started
        started = time.perf_counter()
        vectors = self.embedder.embed_mixed(device_pixels if device_items else None,
                                            [d.pixels for d in host_items])
        model_seconds = time.perf_counter() - started
        if self.split is not None:
            self.split.observe_device(len(device_items), decode_seconds, len(vectors), model_seconds)
        items = device_items + [replace(d, pixels=None) for d in host_items]
        return Embedded(items, vectors, failures)
