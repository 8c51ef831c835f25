"""Batching concurrent text queries into one text-encoder call.

On two cores the text tower is the cost of a warm query (tokenize + ONNX run ~10-25 ms), and a
batch of 16 texts costs far less than 16 single calls. Request threads hand their text to
:class:`TextBatcher` and wait; one thread takes whatever is waiting (up to ``max_batch``), embeds
it in one call and hands each vector back. A lone query is not held back: the worker starts as
soon as a text arrives, so batches form only under load, from the texts that queued meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)


class TextBatcher:
    """Embeds texts for many threads, several at a time.

    Args:
        embed: ``texts -> (n, dim)`` vectors (e.g. :meth:`searchlib.index.Index.embed_texts`).
        max_batch: the most texts per call.
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], max_batch: int = 32):
        self.embed, self.max_batch = embed, max_batch
        self._pending: list[tuple[str, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.calls = 0  # encoder calls made (for tests and stats)
        self.texts = 0
        self._thread = threading.Thread(target=self._loop, name="searchlib-text-batcher", daemon=True)
        self._thread.start()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (blocks until they are embedded)."""
        futures = []
        with self._cond:
            if self._closed:
                raise RuntimeError("the text batcher is closed")
            for text in texts:
                future: Future = Future()
                self._pending.append((text, future))
                futures.append(future)
            self._cond.notify()
        return np.stack([f.result() for f in futures]) if futures else np.zeros((0, 0), np.float32)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed and not self._pending:
                    return
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            try:
                vectors = self.embed([text for text, _ in batch])
            except BaseException as e:  # each waiting request gets the error
                for _, future in batch:
                    future.set_exception(e)
                continue
            self.calls += 1
            self.texts += len(batch)
            for (_, future), vector in zip(batch, vectors):
                future.set_result(vector)
