"""Batching work from concurrent threads into one call: text encoding and vector search.

On two cores the text tower is the cost of a warm query (tokenize + ONNX run, ~10-25 ms), and a
flat search is a memory-bound scan of every vector: a batch of 16 texts costs far less than 16
single calls, and 16 queries scan the vectors once instead of 16 times. Threads hand their item to
a :class:`Batcher` and wait; one worker thread takes whatever is waiting (up to ``max_batch``),
runs it in one call and hands each result back. A lone request is not held back: the worker starts
as soon as an item arrives, so batches form only under load, from the items that queued meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class Batcher:
    """Runs ``fn(items) -> results`` (same length, same order) for many threads, several at a time.

    Args:
        fn: the batched function.
        max_batch: the most items per call.
        name: the worker thread's name.
    """

    def __init__(self, fn: Callable[[list], Sequence], max_batch: int = 32, name: str = "searchlib-batcher"):
        self.fn, self.max_batch = fn, max_batch
        self._pending: list[tuple[Any, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.calls = 0  # batched calls made (for tests and stats)
        self.items = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence) -> list:
        """Results for ``items`` (blocks until they are done)."""
        futures = []
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            for item in items:
                future: Future = Future()
                self._pending.append((item, future))
                futures.append(future)
            self._cond.notify()
        return [f.result() for f in futures]

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
                results = self.fn([item for item, _ in batch])
            except BaseException as e:  # each waiting request gets the error
                for _, future in batch:
                    future.set_exception(e)
                continue
            self.calls += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results):
                future.set_result(result)
