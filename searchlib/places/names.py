"""Place names as people type them (pure: no files, no SQL, no gazetteer).

Names compare after :func:`normalize_name` (case, accents, punctuation and a leading "the" do not
count), so "sao paulo", "São Paulo" and "SAO PAULO" are one place. :func:`read_place_phrase`
finds a trailing "in / at / near PLACE" in a query; it becomes a filter only when the index holds
that place (:class:`PlaceNames`), which is what keeps "a man in black" a plain query.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: The parts of a place, in the order rows and JSON give them.
PLACE_PARTS: tuple[str, ...] = ("city", "region", "country", "country_code")

#: The longest place name a query phrase may hold, in words ("Santa Cruz de la Sierra" has 5).
MAX_NAME_WORDS = 6

_PREPOSITION = re.compile(r"(?:^|\s)(?:in|at|near)\s+", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^\w]+")


def normalize_name(name: str) -> str:
    """``"  The Hague "`` -> ``"hague"``, ``"São Paulo"`` -> ``"sao paulo"``, ``"St. Louis"`` ->
    ``"st louis"``: how two spellings of one place compare."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = _NOT_WORD.sub(" ", plain.replace("_", " ")).split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return " ".join(words)


class PlaceNames:
    """The places an index's photos carry, for matching names against.

    Args:
        rows: distinct ``(city, region, country, country_code)`` tuples (parts may be None).
    """

    def __init__(self, rows: Iterable[tuple[str | None, ...]]):
        self._values: dict[str, dict[str, set[str]]] = {part: {} for part in PLACE_PARTS}
        for row in rows:
            for part, value in zip(PLACE_PARTS, row):
                if value:
                    self._values[part].setdefault(normalize_name(value), set()).add(value)

    def matching(self, name: str, codes: bool = True) -> dict[str, set[str]]:
        """``part -> stored values`` that ``name`` names (``codes``: country codes count too)."""
        key = normalize_name(name)
        out = {}
        for part in PLACE_PARTS:
            if part == "country_code" and not codes:
                continue
            found = self._values[part].get(key)
            if found:
                out[part] = set(found)
        return out

    def holds(self, name: str, codes: bool = True) -> bool:
        """Whether some photo in the index was taken in a place called ``name``."""
        return bool(self.matching(name, codes))


@dataclass(frozen=True)
class PlaceQuery:
    """A text query with its trailing place phrase read.

    Attributes:
        text: what goes to the model ("a red circle" of "a red circle in Tokyo").
        places: the place names that become a filter (all must match), as written.
        missing: a place the query names that the index holds no photo from (the query then runs
            as plain text, whole), else None.
    """

    text: str
    places: tuple[str, ...] = ()
    missing: str | None = None

    @property
    def warning(self) -> str | None:
        """The one-line warning for :attr:`missing`."""
        if self.missing is None:
            return None
        return (f"no photo in the index was taken in {self.missing!r} (by GPS); searching for the "
                f"whole text instead")


def read_place_phrase(query: str, held: Callable[[str], bool],
                      known: Callable[[str], bool] = lambda name: False) -> PlaceQuery:
    """Read a trailing "in / at / near PLACE[, PLACE]" of ``query``.

    The shortest trailing phrase whose names the index all holds (``held(name)``) wins: "a cafe
    near the tower in Paris" filters on Paris. A phrase naming places the gazetteer knows
    (``known(name)``) but the index does not hold gives :attr:`PlaceQuery.missing`. Anything else
    ("a man in black") is plain text.
    """
    text = query.strip()
    missing = None
    for match in reversed(list(_PREPOSITION.finditer(text))):
        phrase = text[match.end():].rstrip(" .!?,;")
        names = [n.strip() for n in phrase.split(",")]
        if not all(normalize_name(n) and len(n.split()) <= MAX_NAME_WORDS for n in names):
            continue
        if all(held(n) for n in names):
            rest = text[:match.start()].strip()
            return PlaceQuery(rest or phrase, tuple(names))
        if missing is None and all(held(n) or known(n) for n in names):
            missing = next(n for n in names if not held(n))
    return PlaceQuery(text, (), missing)
