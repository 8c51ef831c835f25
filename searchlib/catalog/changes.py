"""The records a catalog write takes and gives back: a batch of changes, what it did, the facts of
rows used to detect change, and verify's findings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..models import ModelIdentity
from ..records import ImageRecord

#: Values bound in one ``IN (...)`` (SQLite's historical limit is 999 bound parameters).
MAX_BOUND = 900

def chunks(items: Sequence, size: int = MAX_BOUND) -> Iterator[list]:
    """Consecutive slices of at most ``size`` items (for ``IN`` lists)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])

def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)

@dataclass(frozen=True)
class FileState:
    """A file's change-detection facts: its row (the first, for a video), size and mtime, and the
    ids of every row of the file (a video has one per segment; they change together)."""

    id: int
    size: int
    mtime_ns: int
    ids: tuple[int, ...] = ()

    @property
    def all_ids(self) -> tuple[int, ...]:
        """Every row id of the file."""
        return self.ids or (self.id,)

@dataclass(frozen=True)
class FailedFile:
    """A file that could not be indexed, remembered by size and mtime."""

    path: str
    size: int
    mtime_ns: int
    error: str

@dataclass
class ChangeSet:
    """One batch of writes, applied in one transaction (see :meth:`Catalog.apply`).

    Vectors are unit-norm float32 rows; ``updated`` keeps the id of a file whose bytes changed,
    ``moved`` the id (and vector) of a row whose file now lives at another path.
    """

    added: list[tuple[ImageRecord, np.ndarray]] = field(default_factory=list)
    updated: list[tuple[int, ImageRecord, np.ndarray]] = field(default_factory=list)
    moved: list[tuple[int, ImageRecord, np.ndarray]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    forget_failures: list[str] = field(default_factory=list)
    identity: ModelIdentity | None = None  # recorded with a new index's first batch

    def is_empty(self) -> bool:
        return not (self.added or self.updated or self.moved or self.removed or self.failed
                    or self.forget_failures or self.identity)

@dataclass(frozen=True)
class Applied:
    """What :meth:`Catalog.apply` did: the new generation, the one before, every touched id and the
    vectors now stored for the ids that have one (touched ids without a vector were removed)."""

    generation: int
    previous: int
    touched: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    added_ids: list[int]

@dataclass(frozen=True)
class Consistency:
    """What :meth:`Catalog.consistency` found."""

    images: int
    stored_vectors: int
    rows_without_vector: list[int]
    orphan_vectors: list[int]
    bad_vectors: list[int]
