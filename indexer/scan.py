"""Finding image and RAW files under the roots given to ``searchlib index``."""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from searchlib.imaging import IMAGE_EXTENSIONS, is_image_name  # noqa: F401  (re-exported)
from searchlib.media import is_indexable_name, skipped_raws

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    """A candidate image file as found on disk."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    """A path that could not be scanned (reported as a failure, never fatal)."""

    path: str
    error: str


def _hidden(name: str) -> bool:
    return name.startswith(".")  # also covers macOS "._*" resource-fork files


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def wanted(path: str, root: str, exclude: Sequence[str] = (), include_hidden: bool = False) -> bool:
    """Whether :func:`scan` of ``root`` would enter (a folder) or look at (a file) ``path``: the
    hidden-name and ``exclude`` rules applied to every part below ``root``. (Whether a file is an
    image is not asked here.)"""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return True
    if rel.startswith(".." + os.sep) or rel == "..":
        return False
    current = root
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        if (not include_hidden and _hidden(part)) or _excluded(current, exclude):
            return False
    return True


def scan(roots: Sequence[str], exclude: Sequence[str] = (), include_hidden: bool = False,
         follow_symlinks: bool = False, raw_pairs: str = "jpeg") -> Iterator[FileEntry | ScanProblem]:
    """Yield image and RAW files (regular files only) under ``roots``, and problems met on the way.

    Args:
        roots: absolute files or directories.
        exclude: glob patterns matched against the full path and the file name.
        include_hidden: also enter dot-directories and take dot-files.
        follow_symlinks: follow symlinked directories (loops are detected and skipped).
        raw_pairs: ``jpeg`` leaves out a RAW file with a JPEG or HEIF of the same stem in its folder
            (:mod:`searchlib.media.pairs`); ``both`` takes both. A RAW named as a root is always taken.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        if os.path.isdir(root):
            yield from _walk(root, exclude, include_hidden, follow_symlinks, seen_dirs, raw_pairs)
        else:
            entry = _entry(root, follow_symlinks=True)
            if entry is not None:
                yield entry


def _entry(path: str, follow_symlinks: bool) -> FileEntry | ScanProblem | None:
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        if os.path.islink(path):
            return ScanProblem(path, "broken symbolic link")
        return ScanProblem(path, "file vanished during the scan")
    except OSError as e:
        return ScanProblem(path, f"cannot stat: {e.strerror or e}")
    if stat.S_ISLNK(st.st_mode):
        return None  # a symlink we were told not to follow
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            return None
        return ScanProblem(path, "not a regular file")
    return FileEntry(path, st.st_size, st.st_mtime_ns)


def _walk(root: str, exclude: Sequence[str], include_hidden: bool, follow: bool,
          seen_dirs: set[tuple[int, int]], raw_pairs: str) -> Iterator[FileEntry | ScanProblem]:
    problems: list[ScanProblem] = []

    def onerror(err: OSError) -> None:
        problems.append(ScanProblem(str(err.filename), f"cannot read directory: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=follow):
        try:
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = None
        if key is not None:
            if key in seen_dirs:  # a symlink loop or a directory reached twice
                dirnames[:] = []
                continue
            seen_dirs.add(key)
        dirnames[:] = sorted(d for d in dirnames if (include_hidden or not _hidden(d))
                             and not _excluded(os.path.join(dirpath, d), exclude))
        yield from problems
        problems.clear()
        # Pairs are judged among the files this scan takes: a JPEG excluded or hidden leaves its RAW in.
        taken = [name for name in sorted(filenames) if (include_hidden or not _hidden(name))
                 and is_indexable_name(name) and not _excluded(os.path.join(dirpath, name), exclude)]
        skipped = skipped_raws(taken, raw_pairs)
        for name in taken:
            if name in skipped:
                continue
            path = os.path.join(dirpath, name)
            entry = _entry(path, follow_symlinks=True)
            if isinstance(entry, FileEntry) and not follow and os.path.islink(path):
                continue
            if entry is not None:
                yield entry
    yield from problems
