"""A small cache of text query vectors, so that a repeated query or its next page costs no encoder.

A cold ``searchlib search`` spends about a third of its time loading the text tower (ONNX
Runtime, the tokenizer) and encoding; the same words give the same vector every time. The cache
keeps the vectors of the last :data:`MAX_ENTRIES` texts in memory and, where the index directory
may be written, in ``query-vectors.sqlite`` beside the catalog, keyed by the text and by the
encoder that made them (:func:`encoder_key`: the exported tower's checksum, or the full model and
its device), so a vector comes back only for the encoder that would make it again, bit for bit.

It is a cache: a file that cannot be read, written or locked is left alone (logged, never
raised), and queries encode as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Where the cache is kept in an index directory.
CACHE_FILE = "query-vectors.sqlite"
#: Texts whose vectors are kept (a 512-d vector is 2 KiB: 1000 texts take ~2 MiB).
MAX_ENTRIES = 1000
#: A writer holding the file makes a query wait at most this long before it goes without.
_BUSY_TIMEOUT_MS = 200
#: Texts longer than this are not worth keeping (nobody types them twice).
MAX_TEXT_CHARS = 1000


def _cacheable(text: str) -> bool:
    """Short texts that SQLite can hold (a command line's undecodable bytes arrive as surrogates,
    which UTF-8 cannot encode: such a text is encoded every time, never cached)."""
    if len(text) > MAX_TEXT_CHARS:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encoder_key(kind: str, detail: str) -> str:
    """The key of an encoder: ``onnx`` with the export's checksum, or ``model`` with the model and
    device that run the full tower."""
    return f"{kind}:{detail}"


class QueryVectorCache:
    """Text vectors by ``(encoder key, text)``: in memory, and in ``directory`` when given.

    Args:
        directory: the index directory to keep the file in, or None for memory only (a read-only
            index).
    """

    def __init__(self, directory: Path | None):
        self.path = directory / CACHE_FILE if directory is not None else None
        self._memory: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    # -- the file -----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection | None:
        if self.path is None or self._broken:
            return None
        if self._conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                       isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")  # a lost entry is encoded again
                conn.execute("CREATE TABLE IF NOT EXISTS vectors (encoder TEXT NOT NULL, text TEXT NOT NULL, "
                             "vector BLOB NOT NULL, used REAL NOT NULL, PRIMARY KEY (encoder, text))")
            except sqlite3.Error as e:
                self._give_up(e)
                return None
            self._conn = conn
        return self._conn

    def _give_up(self, error: BaseException) -> None:
        log.info("query vector cache %s not used (%s)", self.path, error)
        self._broken = True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- use ----------------------------------------------------------------------------------
    def lookup(self, encoder: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``texts`` made by ``encoder`` (texts not cached are absent)."""
        found: dict[str, np.ndarray] = {}
        wanted = [t for t in dict.fromkeys(texts) if _cacheable(t)]
        with self._lock:
            for text in wanted:
                vector = self._memory.get((encoder, text))
                if vector is not None:
                    self._memory.move_to_end((encoder, text))
                    found[text] = vector
            missing = [t for t in wanted if t not in found]
            conn = self._connection() if missing else None
            if conn is not None:
                try:
                    for text in missing:
                        row = conn.execute("SELECT vector FROM vectors WHERE encoder = ? AND text = ?",
                                           (encoder, text)).fetchone()
                        if row is not None:
                            vector = np.frombuffer(row[0], dtype=np.float32).copy()
                            found[text] = vector
                            self._remember(encoder, text, vector)
                except sqlite3.Error as e:
                    self._give_up(e)
        return found

    def store(self, encoder: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep the vectors ``encoder`` made for ``texts`` (one row each)."""
        rows = [(t, np.ascontiguousarray(v, dtype=np.float32)) for t, v in zip(texts, vectors) if _cacheable(t)]
        if not rows:
            return
        with self._lock:
            for text, vector in rows:
                self._remember(encoder, text, vector)
            conn = self._connection()
            if conn is None:
                return
            now = time.time()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                                 [(encoder, t, v.tobytes(), now) for t, v in rows])
                conn.execute("DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY used DESC "
                             "LIMIT -1 OFFSET ?)", (MAX_ENTRIES,))
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._give_up(e)

    def _remember(self, encoder: str, text: str, vector: np.ndarray) -> None:
        self._memory[(encoder, text)] = vector
        self._memory.move_to_end((encoder, text))
        while len(self._memory) > MAX_ENTRIES:
            self._memory.popitem(last=False)
