"""From ranked hits to the page a caller asked for: cuts, copies folded, order, paging (pure).

A search walks the ranking in growing windows (best first) until :class:`ResultPlan` says it has
what the page needs. Paging must not depend on the page: asking for hits 11-20 gives what comes
after hits 1-10 of the same request. Two cases need care:

* **Score order with ``relevant`` or ``collapse``**: the page counts *kept* hits, so the window
  grows until ``offset + k`` are kept, or the ranking shows the kept set has ended.
* **Date order with a cut** (``relevant``, ``min_score``, ``relative``): the whole kept set is
  ordered by date, then paged, so the walk starts from the same window whatever the page and
  stops only where the kept set ends. Without a cut there is no "set of matches" to order, so
  each page holds the next ``k`` best hits, in date order.

The kept set ends where a score cut is crossed (scores only fall along the ranking), or, for
``relevant``, where the second half of a window holds no relevant hit (relevance mostly falls
with the score, but not strictly, so one stretch without any is taken as the end).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from .query import DUPLICATE_THRESHOLD, MAX_K, Hit, collapse_duplicates, relevance_cut, renumber, sort_by_date
from .relevance import is_relevant

#: The first window when the whole kept set is ordered by date: the same for every page.
WHOLE_SET_WINDOW = 256
#: The first window when kept hits are counted (``relevant`` / ``collapse``): enough ranking to
#: tell "nothing relevant" without walking further.
COUNTED_WINDOW = 64


@dataclass(frozen=True)
class ResultPlan:
    """What the caller asked for, and how far down the ranking that takes a search."""

    k: int
    offset: int = 0
    sort: str = "score"
    relevant: bool = False
    min_score: float | None = None
    relative: float | None = None
    collapse: bool = False

    @property
    def has_cut(self) -> bool:
        return self.relevant or self.min_score is not None or self.relative is not None

    @property
    def whole_set(self) -> bool:
        """Whether the page comes from the whole kept set ordered by date."""
        return self.sort != "score" and self.has_cut

    def first_window(self) -> int:
        """How many of the best hits to look at first."""
        if self.whole_set:
            return WHOLE_SET_WINDOW
        need = self.offset + self.k
        return min(MAX_K, max(need, COUNTED_WINDOW)) if (self.relevant or self.collapse) else need

    def keep(self, hits: list[Hit], vectors: np.ndarray, relevant_anyway: Collection[int] = ()) -> list[Hit]:
        """The hits that survive: copies folded into their best hit (before the cuts, so that a
        copy is listed with its best hit even where it scores a little under a cut), then the
        relevance cut (``relevant_anyway``: ids that pass it whatever their relevance, such as
        photos in which a word of the query is written) and the score cuts."""
        if self.collapse:
            hits = collapse_duplicates(hits, vectors, DUPLICATE_THRESHOLD)
        if self.relevant:
            hits = [h for h in hits if is_relevant(h.relevance) or h.id in relevant_anyway]
        return relevance_cut(hits, self.min_score, self.relative)

    def enough(self, kept: list[Hit], ranked: list[Hit], exhausted: bool) -> bool:
        """Whether a window of ``ranked`` hits (best first; ``kept`` of them survive) answers the
        request: the ranking is exhausted, the kept set has ended, or (paging through kept hits)
        the page is full."""
        if exhausted or self._kept_set_ended(ranked):
            return True
        return not self.whole_set and len(kept) >= self.offset + self.k

    def _kept_set_ended(self, ranked: list[Hit]) -> bool:
        if not ranked:
            return True
        last = ranked[-1].score
        if self.min_score is not None and last < self.min_score:
            return True
        best = ranked[0].score
        if self.relative is not None and last < best - self.relative * abs(best):
            return True
        return self.relevant and not any(is_relevant(h.relevance) for h in ranked[len(ranked) // 2:])

    def page(self, kept: list[Hit]) -> list[Hit]:
        """The requested page of the kept hits, in the requested order, ranked from ``offset + 1``."""
        first, end = self.offset, self.offset + self.k
        if self.sort == "score":
            return renumber(kept[first:end], first + 1)
        newest = self.sort == "date"
        if self.whole_set:
            return renumber(sort_by_date(kept, newest_first=newest)[first:end], first + 1)
        return renumber(sort_by_date(kept[first:end], newest_first=newest), first + 1)
