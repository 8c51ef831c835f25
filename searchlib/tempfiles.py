"""Names for temporary files written beside their target and renamed over it.

A process id alone is not enough: the threads of one server process can make the same thumbnail
or the same relevance sample at once, and two writers of one temporary file corrupt each other
(one renames the file away while the other is still writing it).
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

_serial = itertools.count()


def temp_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden temporary name in ``path``'s folder that no other process, thread or call uses."""
    return path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_serial)}{suffix}"


def replace_with_copy(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` through a temporary file and a rename (never half written)."""
    import shutil

    tmp = temp_beside(target)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
