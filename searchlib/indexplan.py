"""Which FAISS index a collection gets, from its size and a memory budget.

The rule (``index_type`` "auto"), for ``n`` vectors of ``d`` dimensions and a budget of ``B`` bytes:

1. **Flat** (exact) while ``n`` is at most :data:`FLAT_MAX` and ``n * (4d + 8)`` fits ``B``;
2. **IVF-Flat** (``IVF{nlist},Flat``: exact vectors, a fraction of the lists scanned) while
   ``n * (4d + 8)`` plus the centroids fits ``B``;
3. otherwise **OPQ + IVF with an HNSW coarse quantizer + PQ**
   (``OPQ{m}_{d'},IVF{nlist}_HNSW32,PQ{m}x8``): each vector becomes ``m`` bytes of code plus its
   8-byte id, ``m`` the largest of 128, 64, 32, 16, 8 (a divisor of ``d``) whose codes take at
   most half the budget (the rest is for the page cache of the lists a query reads, the quantizer
   and the query itself). Its inverted lists live on disk and are memory-mapped; the exact vectors
   stay in the catalog, where the top candidates are re-ranked from (``rerank``).

``nlist`` is about ``sqrt(n)`` rounded to a power of two (at least 64), which keeps k-means
training affordable on a few cores; IVF needs ``39 * nlist`` vectors to train and PQ ``39 * 256``,
so smaller collections stay Flat whatever the budget. The default budget is a quarter of this
machine's memory.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass

from .errors import ConfigError

#: Collections up to this size use exact search (a flat scan of 200k x 512 takes ~15 ms here).
FLAT_MAX = 200_000
#: Vectors PQ's 256-centroid codebooks need to train.
PQ_TRAIN_MIN = 39 * 256
PQ_SIZES = (128, 64, 32, 16, 8)
ID_BYTES = 8


@dataclass(frozen=True)
class IndexPlan:
    """A chosen index: its factory string, whether its lists live on disk, what it should take."""

    factory: str
    on_disk: bool
    expected_bytes: int
    budget_bytes: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40, "tb": 10**12, "tib": 1 << 40}


def parse_size(text: str | int) -> int:
    """``"2GiB"``, ``"512M"``, ``"1.5GB"``, ``3000000`` -> bytes.

    Raises:
        ConfigError: not a size.
    """
    if isinstance(text, int):
        size = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _UNITS:
            raise ConfigError(f"cannot read size {text!r}; write e.g. 2GiB, 512MiB or 1.5GB")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"a memory budget must be more than 0 bytes, not {text!r}")
    return size


def default_budget() -> int:
    """A quarter of this machine's physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(256 << 20, total // 4)


def nlist_for(count: int) -> int:
    return 2 ** max(6, min(16, round(math.log2(max(1.0, math.sqrt(count))))))


def flat_bytes(count: int, dim: int) -> int:
    return count * (4 * dim + ID_BYTES)


def plan_index(count: int, dim: int, requested: str = "auto", budget: int | None = None) -> IndexPlan:
    """The index for ``count`` vectors of ``dim`` dimensions (``requested`` a factory string or ``auto``)."""
    budget = budget or default_budget()
    if requested and requested != "auto":
        on_disk = "PQ" in requested.upper() and "IVF" in requested.upper()
        return IndexPlan(requested, on_disk, expected_bytes(requested, count, dim), budget, "requested")
    flat = flat_bytes(count, dim)
    if count <= FLAT_MAX and flat <= budget:
        return IndexPlan("Flat", False, flat, budget, f"{count} vectors fit the budget exactly")
    nlist = nlist_for(count)
    ivf_flat = flat + nlist * 4 * dim
    too_few = count < max(39 * nlist, PQ_TRAIN_MIN)
    if ivf_flat <= budget or too_few:
        if count < 39 * nlist:
            return IndexPlan("Flat", False, flat, budget, f"{count} vectors are too few to train IVF{nlist}")
        note = "fits the budget" if ivf_flat <= budget else "over the budget, but too few vectors to train PQ"
        return IndexPlan(f"IVF{nlist},Flat", False, ivf_flat, budget, f"exact vectors, {nlist} lists: {note}")
    fixed = nlist * 4 * dim + dim * dim * 4 + nlist * 32 * 8  # centroids, OPQ rotation, HNSW links
    for m in PQ_SIZES:
        if dim % m or dim // m < 2:
            continue
        codes = count * (m + ID_BYTES)
        if codes + fixed <= budget // 2 or m == PQ_SIZES[-1]:
            factory = f"OPQ{m}_{dim},IVF{nlist}_HNSW32,PQ{m}x8"
            over = "" if codes + fixed <= budget // 2 else " (over the budget even at the smallest code)"
            return IndexPlan(factory, True, codes + fixed, budget,
                             f"{m}-byte codes on disk, {nlist} lists{over}")
    raise ConfigError(f"no PQ code size divides the dimension {dim}; give --index-type")


def expected_bytes(factory: str, count: int, dim: int) -> int:
    """The memory an index of ``factory`` type holding ``count`` ``dim``-d vectors is expected to take."""
    upper = factory.upper()
    pq = re.search(r"PQ(\d+)", upper)
    if pq and "IVF" in upper:
        return count * (int(pq.group(1)) + ID_BYTES)
    if upper.startswith("HNSW"):
        return flat_bytes(count, dim) + count * 32 * 8
    return flat_bytes(count, dim)
