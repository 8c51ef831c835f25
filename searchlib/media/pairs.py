"""RAW+JPEG pairs: a camera set to write both leaves ``IMG_1.CR2`` and ``IMG_1.JPG`` side by side.

The two show the same picture, so by default only the rendered image (JPEG or HEIF) is indexed
and the RAW rides along as its *sibling* on each hit; ``--raw-pairs both`` indexes both (each then
lists the other). A pair is the same stem (exact case) in the same folder; endings compare
case-insensitively.

Siblings are found from the folder when hits are made, not stored in the catalog: the catalog has
no row for a skipped RAW, a RAW copied in or deleted later shows up (or goes) without indexing
again, and no schema change is needed. The cost is one directory listing per distinct folder among
the hits of a search (measured: about 15 ms of CPU for a folder of 15,000 files, ten hits in it, on the
project's shared 2-core machine).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from .raw import is_raw_name

log = logging.getLogger(__name__)

#: ``jpeg``: index the rendered image of a pair and show the RAW as its sibling; ``both``: index both.
PAIR_MODES = ("jpeg", "both")

#: The rendered half of a pair: what cameras write next to a RAW.
RENDERED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".heic", ".heif", ".hif"})


def _split(name: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(name)
    return stem, ext.lower()


def is_rendered_name(name: str) -> bool:
    """Whether a file name is the rendered half of a pair (a JPEG or HEIF ending)."""
    return _split(name)[1] in RENDERED_EXTENSIONS


def skipped_raws(names: Iterable[str], mode: str = "jpeg") -> set[str]:
    """The RAW file names among ``names`` (one folder's) that a scan leaves out: those with a
    rendered image of the same stem, unless ``mode`` is ``both``."""
    if mode == "both":
        return set()
    names = list(names)
    rendered = {_split(n)[0] for n in names if is_rendered_name(n)}
    return {n for n in names if is_raw_name(n) and _split(n)[0] in rendered}


def _partners(name: str, same_stem: Iterable[str]) -> list[str]:
    if is_raw_name(name):
        wanted = lambda n: is_rendered_name(n) or is_raw_name(n)  # noqa: E731
    elif is_rendered_name(name):
        wanted = is_raw_name
    else:
        return []
    return sorted(n for n in same_stem if n != name and wanted(n))


def siblings_of(paths: Iterable[str]) -> dict[str, list[str]]:
    """The other halves of each path's RAW+JPEG pair, as full paths (paths with none are left out).

    Each distinct folder is listed once, and only names with a stem of a path asked about are looked
    at; a folder that cannot be listed gives no siblings.
    """
    stems: dict[str, dict[str, list[str]]] = {}  # folder -> stem -> names of the paths asked about
    for path in paths:
        folder, name = os.path.split(path)
        if is_raw_name(name) or is_rendered_name(name):
            stems.setdefault(folder, {}).setdefault(_split(name)[0], []).append(name)
    out: dict[str, list[str]] = {}
    for folder, wanted in stems.items():
        try:
            names = os.listdir(folder or ".")
        except OSError as e:
            log.debug("siblings of files in %s not looked up: %s", folder, e)
            continue
        same: dict[str, list[str]] = {}
        for n in names:
            stem, dot, _ = n.rpartition(".")  # cheap: a folder may hold tens of thousands of names
            if dot and stem in wanted:
                same.setdefault(stem, []).append(n)
        for stem, asked in wanted.items():
            for name in asked:
                found = _partners(name, same.get(stem, ()))
                if found:
                    out[os.path.join(folder, name)] = [os.path.join(folder, n) for n in found]
    return out
