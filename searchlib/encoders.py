"""The model behind an index, loaded as late and as little as possible.

Text queries go through the exported ONNX text tower when the index has one (no torch); the full
model loads only when something needs it (an image query that is not indexed, a model without an
export, ``device="cuda"``). Both load once and are shared by every thread using the index. Text
vectors go through a small cache (:mod:`searchlib.querycache`): a repeated query loads no encoder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import IndexNotFoundError
from .models import ModelIdentity
from .querycache import QueryVectorCache, encoder_key

log = logging.getLogger(__name__)


class IndexModel:
    """The index's model: the full CLIP model (on first use) and the exported text tower.

    Args:
        directory: the index directory holding the exported text tower.
        identity: the model the index was built with (None for an empty index).
        device: where the full model runs (``auto``, ``cpu``, ``cuda``). On CUDA, text also goes
            through the full model (the GPU is faster than the exported tower on the CPU).
        writable: whether a missing or damaged export may be made again here.
    """

    def __init__(self, directory: Path, identity: ModelIdentity | None, device: str = "auto",
                 writable: bool = True):
        self.directory, self.identity, self.device, self.writable = directory, identity, device, writable
        self._embedder = None
        self._text = None  # OnnxTextEncoder, or False when there is none
        self._healed = False  # a failed export is made again once per process, not per query
        self._bank: np.ndarray | None = None
        self._lock = threading.Lock()
        self.query_cache = QueryVectorCache(directory if writable else None)
        #: Load the text tower for a query or two (:meth:`searchlib.index.Index.expect_few_queries`).
        self.few_queries = False

    def _require_identity(self) -> ModelIdentity:
        if self.identity is None:
            raise IndexNotFoundError(f"the index at {self.directory} is empty; index some images first")
        return self.identity

    def embedder(self):
        """The full model (loaded once, kept warm)."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    from .embedding import Embedder

                    ident = self._require_identity()
                    self._embedder = Embedder(ident.to_spec(), device=self.device, expected=ident)
        return self._embedder

    def text_encoder(self):
        """The exported ONNX text tower, or None when texts go through the full model."""
        if self._text is None:
            with self._lock:
                if self._text is None:
                    self._text = self._load_text_encoder() or False
        return self._text or None

    def _load_text_encoder(self):
        from .textenc import OnnxTextEncoder, read_export_note
        from .textquant import load_int8

        ident = self._require_identity()
        if self.device.startswith("cuda"):
            return None
        note = read_export_note(self.directory, ident)
        # The int8 tower where its fidelity gate passed (a damaged one falls back to fp32).
        prepack = not self.few_queries
        int8 = load_int8(self.directory, note, self.writable, prepack) if note is not None else None
        return int8 or OnnxTextEncoder.for_index(self.directory, ident, prepack)

    def ensure_text_encoder(self, embedder=None) -> None:
        """Export the text tower for fast cold queries if the index has no usable one."""
        from .textenc import export_is_up_to_date, export_text_encoder

        ident = self.identity
        if ident is None or not self.writable or export_is_up_to_date(self.directory, ident):
            return
        try:
            export_text_encoder(embedder or self.embedder(), self.directory)
        except Exception as e:  # queries still work through the full model
            log.warning("could not export the text encoder (%s: %s); queries will load the full model",
                        type(e).__name__, e)
        with self._lock:
            self._text = None

    def ensure_int8_tower(self, count: Callable[[], int], sample: Callable[[int], np.ndarray]) -> None:
        """Make the int8 text tower and run its fidelity gate on the index's vectors, where needed
        (:func:`searchlib.textquant.ensure_int8`). ``count()`` is how many vectors the index
        stores, ``sample(n)`` draws about n of them."""
        from .textenc import read_export_note
        from .textquant import ensure_int8

        ident = self.identity
        if ident is None or not self.writable:  # (made on a GPU run too: CPU queries use it)
            return
        note = read_export_note(self.directory, ident)
        if note is None:
            return
        try:
            ensure_int8(self.directory, note, ident, count(), sample)
        except Exception as e:  # queries use the fp32 tower; indexing is done and must not fail here
            log.warning("could not make the int8 text tower (%s: %s); queries use the fp32 tower",
                        type(e).__name__, e)
        with self._lock:
            self._text = None

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized text vectors in the index's space (cached ones without loading an encoder)."""
        texts = list(texts)
        if not texts or self.identity is None:
            return self._encode(texts)
        cached = self.query_cache.lookup(self._encoder_key(), texts)
        missing = [t for t in dict.fromkeys(texts) if t not in cached]
        if missing:
            vectors = self._encode(missing)
            # Stored under the encoder that made them (the export may have failed to load).
            self.query_cache.store(self._encoder_key(), missing, vectors)
            cached.update(zip(missing, vectors))
        return np.stack([cached[t] for t in texts])

    def _encoder_key(self) -> str:
        """Which encoder answers texts here (without loading it): the exported tower that would
        load (int8 where its gate passed, else fp32; a key of its own each, so their vectors never
        mix), by its checksum and its file's size and time (a file rewritten since, even with the
        same note, is a new key: the next query loads it, and a damaged one is noticed and
        exported again), or the full model on its device. Once loaded, the tower that did load."""
        if self._text is not False and not self.device.startswith("cuda"):  # False: no usable export
            from .textenc import ONNX_FILE, export_is_current, read_checksum, weights_file_for
            from .textquant import INT8_FILE, int8_for_queries

            ident = self._require_identity()
            tower = None
            if self._text:
                tower = (self._text.tower, self._text.file, self._text.checksum)
            elif export_is_current(self.directory, ident):
                fp32 = read_checksum(self.directory)
                int8 = int8_for_queries(self.directory, str(fp32))
                tower = ("int8", INT8_FILE, int8["checksum"]) if int8 else ("fp32", ONNX_FILE, fp32)
            if tower is not None:
                kind, file, checksum = tower
                try:
                    info = (self.directory / file).stat()
                    stamp = f"{checksum}:{info.st_size}:{info.st_mtime_ns}"
                    try:  # its weights too (towers exported before format 3 have none)
                        weights = (self.directory / weights_file_for(file)).stat()
                        stamp += f":{weights.st_size}:{weights.st_mtime_ns}"
                    except FileNotFoundError:
                        pass
                except OSError:
                    stamp = None
                if stamp is not None:
                    # Unpacked weights sum in another order (vectors differ by ~1e-6): a key of their own.
                    packing = "" if (self._text.prepack if self._text else not self.few_queries) else "-unpacked"
                    return encoder_key(("onnx" if kind == "fp32" else "onnx-int8") + packing, stamp)
        ident = self._require_identity()
        return encoder_key("model", f"{ident.name}:{ident.weights_sha256 or ident.pretrained}:{self.device}")

    def _encode(self, texts: list[str]) -> np.ndarray:
        encoder = self.text_encoder()
        if encoder is not None:
            return encoder.embed_texts(list(texts))
        vectors = self.embedder().embed_texts(list(texts))
        if self.writable and not self.device.startswith("cuda") and not self._healed:
            # A missing or damaged export heals at the first query that needed the full model.
            from .textenc import export_is_current, remove_export

            self._healed = True
            if self.identity is not None and export_is_current(self.directory, self.identity):
                remove_export(self.directory)  # its note is fine, so its file failed to load
            self.ensure_text_encoder(self.embedder())
        return vectors

    def bank_vectors(self) -> np.ndarray:
        """The relevance bank's captions (:data:`searchlib.relevance.BANK`) in the index's space:
        read from the index directory, or embedded once and kept there."""
        if self._bank is None:
            from .relevance import BANK, load_bank, save_bank

            model = self._require_identity().to_dict()
            vectors = load_bank(self.directory, model)
            if vectors is None:
                vectors = self._encode(list(BANK))  # kept in its own file, not in the query cache
                if self.writable:
                    save_bank(self.directory, model, vectors)
            self._bank = vectors
        return self._bank

    def embed_images(self, images: Sequence) -> np.ndarray:
        """Normalized image vectors (paths, bytes or ``PIL.Image``) in the index's space."""
        return self.embedder().embed_images(list(images))
