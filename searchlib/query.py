"""Queries as data: parsing combined queries, combining their vectors, relevance cuts, sorting.

Pure functions over strings, numpy arrays and :class:`Hit` lists: nothing here touches the file
system, the catalog, the FAISS cache or the model. A string term is always text; whether an
argument names an image file is for the caller to decide (the CLI does, for its arguments; the web
API takes uploads and ids). Embedding the terms and searching are :mod:`searchlib.search`'s job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from .errors import QueryError
from .records import path_fields
from .vectormath import normalize

#: The most hits one search returns (``k + offset``).
MAX_K = 10_000
#: Two images whose vectors' cosine exceeds this are near-duplicates (``searchlib duplicates``,
#: and ``collapse`` in a search): re-encoded, resized or lightly edited copies of one photo.
DUPLICATE_THRESHOLD = 0.95
#: Orders of the kept hits: best first, newest first, oldest first.
SORTS = ("score", "date", "date-asc")
#: The most terms one query may combine. Each text term is one encoder input, so this bounds the
#: work a request can ask for (a server got 100,000 ``red + red ...`` terms: 48 s of CPU).
MAX_TERMS = 64
#: The longest query text accepted. The text tower reads 77 tokens per term; anything longer is
#: cut there anyway, but tokenizing and splitting it would still cost time.
MAX_QUERY_CHARS = 10_000
#: The largest term weight (in absolute value). Only the ratios between weights matter; this keeps
#: the weighted sum finite in float32 (``1e39:red`` overflowed it and returned nothing).
MAX_WEIGHT = 1000.0


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1-based position (continuing after ``offset`` when paging).
        id: catalog row id (also the FAISS id).
        path: absolute file path.
        score: cosine similarity between the query and the image (inner product of unit vectors).
        metadata: file facts, image metadata, capture ``date`` and ``date_source``, tags.
        relevance: the calibrated relevance of the hit (see :mod:`searchlib.relevance`), when computed.
        siblings: the other halves of the file's RAW+JPEG pair (full paths; see
            :mod:`searchlib.media.pairs`): the RAW of an indexed JPEG, the JPEG of an indexed RAW.
        duplicates: with ``collapse``, the ids of the weaker hits folded into this one as its
            near-duplicates (None when not collapsing).
    """

    rank: int
    id: int
    path: str
    score: float
    metadata: dict = field(default_factory=dict)
    relevance: float | None = None
    siblings: tuple[str, ...] = ()
    duplicates: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        """JSON-ready: ``rank, id, path, score`` (``relevance`` if computed, ``duplicates`` when
        collapsing) plus every metadata field.

        A path that is not valid UTF-8 comes as text with U+FFFD plus ``path_bytes`` (base64).
        """
        out: dict = {"rank": self.rank, "id": self.id, **path_fields(self.path), "score": self.score}
        if self.relevance is not None:
            out["relevance"] = self.relevance
        out.update(self.metadata)
        # Display text for each path (a name that is not UTF-8 shows U+FFFD, as "path" does).
        out["siblings"] = [path_fields(p)["path"] for p in self.siblings]
        if self.duplicates is not None:
            out["duplicates"] = list(self.duplicates)
        return out


@dataclass(frozen=True)
class QueryTerm:
    """One part of a combined query with a signed weight.

    ``value`` is a text (``kind="text"``), an image (``kind="image"``: a path, encoded bytes or a
    ``PIL.Image``) or a vector (``kind="vector"``).
    """

    value: Any
    weight: float = 1.0
    kind: str = "text"

    @property
    def is_image(self) -> bool:
        return self.kind == "image"


_WEIGHT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*:\s*(.+)$", re.S)
_SPLIT = re.compile(r"\s+([+-])\s+")


def parse_term(text: str, sign: float = 1.0) -> QueryTerm:
    """``"sunset"`` or ``"2:sunset"`` -> a text :class:`QueryTerm` (signed weight)."""
    weight = 1.0
    match = _WEIGHT.match(text)
    if match:
        weight, text = float(match.group(1)), match.group(2)
    text = text.strip()
    if not text:
        raise QueryError("an empty query term; write e.g. 'beach + sunset - people'")
    check_weight(weight, text)
    return QueryTerm(text, sign * weight, "text")


def check_weight(weight: float, what: object = "a term") -> None:
    """Reject a weight that is not a number or larger than :data:`MAX_WEIGHT`.

    Raises:
        QueryError: the weight cannot be used.
    """
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        name = repr(what) if isinstance(what, str) else "a term"
        raise QueryError(f"the weight of {name[:60]} must be a number between -{MAX_WEIGHT:g} and "
                         f"{MAX_WEIGHT:g}, not {weight:g}; only the ratios between weights matter")


def check_terms(terms: list[QueryTerm]) -> None:
    """Bound a query's work: at most :data:`MAX_TERMS` terms, each weight within :data:`MAX_WEIGHT`.

    Raises:
        QueryError: too many terms, or a weight out of bounds.
    """
    if len(terms) > MAX_TERMS:
        raise QueryError(f"the query has {len(terms)} terms; at most {MAX_TERMS} can be combined")
    for term in terms:
        check_weight(term.weight, term.value if term.kind == "text" else "a term")


def parse_query(text: str) -> list[QueryTerm]:
    """Split ``"beach + sunset - people"`` into text terms. Only `` + `` and `` - `` with spaces
    split, so ``t-shirt`` and ``black-and-white`` stay whole.

    Raises:
        QueryError: an empty term, a bad weight, more than :data:`MAX_QUERY_CHARS` characters or
            more than :data:`MAX_TERMS` terms (checked before any term is parsed).
    """
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is {len(text):,} characters long; at most {MAX_QUERY_CHARS:,} are read")
    parts = _SPLIT.split(f" {text.strip()} ".strip())
    if len(parts) // 2 + 1 > MAX_TERMS:
        raise QueryError(f"the query has {len(parts) // 2 + 1} terms; at most {MAX_TERMS} can be combined")
    terms = [parse_term(parts[0])]
    for op, value in zip(parts[1::2], parts[2::2]):
        terms.append(parse_term(value, 1.0 if op == "+" else -1.0))
    return terms


def combine(vectors: np.ndarray, weights: list[float]) -> np.ndarray:
    """Weighted sum of unit vectors, renormalized (the query direction in embedding space).

    Raises:
        QueryError: a weight out of bounds (see :func:`check_weight`), or terms that cancel out.
    """
    for weight in weights:
        check_weight(weight)
    total = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    if not np.any(total):
        raise QueryError("the query terms cancel out; change their weights")
    return normalize(total)[0]


def relevance_withheld(terms: list[QueryTerm]) -> str | None:
    """Why relevance is not computed for ``terms``, or None when it is.

    Relevance is calibrated on single text queries. A combined query's vector is a direction
    between its terms, not a description: against the caption bank it looks far more specific
    than it is (``"x - y"`` judged an unrelated image relevant at 1.00), and sums of terms score
    lower than each term alone. So it is withheld for them, as for image and vector queries.
    """
    if any(t.kind != "text" for t in terms):
        return "relevance is judged for text queries only, not for image or vector queries"
    if len(terms) > 1 or terms[0].weight <= 0:
        return ("relevance is judged for single text queries only, not for combined ones "
                "('a + b', 'a - b', --add, --subtract): it is not calibrated for them")
    return None


def check_cut(min_score: float | None, relative: float | None) -> None:
    """Reject cut parameters that would silently return nothing (NaN) or make no sense."""
    if min_score is not None and not math.isfinite(min_score):
        raise QueryError(f"--min-score must be a number, not {min_score}")
    if relative is not None and (not math.isfinite(relative) or relative < 0):
        raise QueryError(f"--relative must be a number >= 0, not {relative}")


def relevance_cut(hits: list[Hit], min_score: float | None = None, relative: float | None = None) -> list[Hit]:
    """Drop weak hits: below ``min_score``, or more than ``relative`` × |best| below the best score."""
    check_cut(min_score, relative)
    if not hits:
        return hits
    best = hits[0].score
    return [h for h in hits
            if (min_score is None or h.score >= min_score)
            and (relative is None or h.score >= best - relative * abs(best))]


def _when(hit: Hit) -> str:
    if hit.metadata.get("date"):
        return str(hit.metadata["date"])
    if hit.metadata.get("taken_at"):
        return str(hit.metadata["taken_at"])
    return datetime.fromtimestamp(hit.metadata.get("mtime") or 0).isoformat()


def sort_by_date(hits: list[Hit], newest_first: bool = False) -> list[Hit]:
    """Re-rank hits by capture date (EXIF, else mtime), oldest first (or newest first); ranks follow
    the new order. Hits taken at the same moment keep their order (the better first)."""
    if newest_first:
        # Stable on a reversed key: equal dates must stay best first, so no reverse=True trick.
        order = sorted(range(len(hits)), key=lambda i: _when(hits[i]))
        groups: list[list[int]] = []
        for i in order:
            if groups and _when(hits[groups[-1][0]]) == _when(hits[i]):
                groups[-1].append(i)
            else:
                groups.append([i])
        ordered = [hits[i] for group in reversed(groups) for i in group]
    else:
        ordered = sorted(hits, key=_when)
    first = hits[0].rank if hits else 1
    return [replace(h, rank=first + i) for i, h in enumerate(ordered)]


def collapse_duplicates(hits: list[Hit], vectors: np.ndarray, threshold: float) -> list[Hit]:
    """Fold each hit that is a near-duplicate of a better one into it.

    Walks the hits best first; a hit whose vector has a cosine above ``threshold`` (the duplicate
    finder's rule) with an already kept hit is dropped and its id added to the first such hit's
    ``duplicates``. So each group shows once, as its best hit.

    Args:
        hits: best first.
        vectors: the hits' unit vectors, one row per hit, in the same order.
        threshold: the cosine from which two images are copies of each other.
    """
    kept: list[int] = []
    folded: dict[int, list[int]] = {}
    vectors = np.asarray(vectors, dtype=np.float32)
    for i in range(len(hits)):
        if kept:
            close = np.flatnonzero(vectors[kept] @ vectors[i] > threshold)
            if len(close):
                folded[kept[int(close[0])]].append(hits[i].id)
                continue
        kept.append(i)
        folded[i] = []
    return [replace(hits[i], duplicates=tuple(folded[i])) for i in kept]


def renumber(hits: list[Hit], first: int = 1) -> list[Hit]:
    """The same hits ranked ``first, first + 1, ...``."""
    return [replace(h, rank=first + i) for i, h in enumerate(hits)]
