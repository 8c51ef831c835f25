"""Formatting for humans (tables) and machines (JSON, JSON lines, path lists).

Human output escapes control and bidirectional-override characters and shows bytes that are not
UTF-8 as ``\\xNN``, so a file name can neither break a table row nor disguise itself. Machine
output keeps names exact: JSON carries ``path_bytes`` where a name is not UTF-8
(:func:`searchlib.records.path_fields`), and ``--paths -0`` writes the raw bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Sequence

import click

#: Characters that reorder or hide text in a terminal (Unicode bidi controls, zero-width marks).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _cell_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogate escape)
        return f"\\x{code - 0xDC00:02x}"
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
        return f"\\u{code:04x}"
    return ch


def clean(text: str) -> str:
    """Human-safe text: control, bidi and undecodable characters shown as escapes."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(_cell_char(ch) for ch in text)


def _valid_utf8(data):
    """The same data with lone surrogates in strings replaced by U+FFFD (valid UTF-8 JSON)."""
    if isinstance(data, str):
        return data.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(data) else data
    if isinstance(data, dict):
        return {_valid_utf8(k): _valid_utf8(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_valid_utf8(v) for v in data]
    return data


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _dumps(data, indent: int | None) -> str:
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    if _has_surrogates(text):
        text = json.dumps(_valid_utf8(data), indent=indent, ensure_ascii=False, default=str)
    return text


def echo_json(data) -> None:
    """One JSON document (indented), always valid UTF-8."""
    click.echo(_dumps(data, 2))


def echo_lines(items: Iterable) -> None:
    """JSON lines: one compact object per line (``--nl``)."""
    for item in items:
        click.echo(_dumps(item, None))


def echo_paths(paths: Iterable[str], nul: bool = False) -> None:
    """One path per line, or NUL-separated (``-0``, for ``xargs -0``), as the file system's bytes."""
    out = sys.stdout.buffer
    end = b"\0" if nul else b"\n"
    for path in paths:
        out.write(os.fsencode(path) + end)
    out.flush()


def shorten(text: str, width: int) -> str:
    """Keep the end of long paths: the file name matters more than the root."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], flex: int = -1) -> str:
    """A plain aligned table; in a terminal, column ``flex`` is shortened to fit it (when piped,
    nothing is shortened, so ``grep`` sees whole paths). Cells are escaped (:func:`clean`)."""
    rows = [[clean(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    flex_i = flex % len(headers)
    if sys.stdout.isatty():
        term = shutil.get_terminal_size((120, 20)).columns
        fixed = sum(w + 2 for i, w in enumerate(widths) if i != flex_i)
        widths[flex_i] = max(20, min(widths[flex_i], term - fixed))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        cells = [shorten(c, widths[i]) if i == flex_i else c for i, c in enumerate(r)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def date_cell(meta: dict) -> str:
    """``2019-06-01`` from EXIF, ``2019-06-01 (file)`` from the file's modification time."""
    date = str(meta.get("date") or "")[:10]
    return f"{date} (file)" if meta.get("date_source") == "file" else date


def output_options(command):
    """``--json``, ``--nl``, ``--paths`` and ``-0``: how a listing command writes its results."""
    for option in reversed([
        click.option("--json", "as_json", is_flag=True, help="Print one JSON array."),
        click.option("--nl", "as_nl", is_flag=True, help="Print one JSON object per line (JSON lines)."),
        click.option("--paths", "as_paths", is_flag=True, help="Print only the paths, one per line."),
        click.option("-0", "--null", "nul", is_flag=True,
                     help="With --paths: separate paths with NUL bytes instead of newlines (for xargs -0)."),
    ]):
        command = option(command)
    return command


def emit(items: list[dict], paths: list[str], as_json: bool, as_nl: bool, as_paths: bool, nul: bool) -> bool:
    """Write ``items`` (or, with ``--paths``, their ``paths`` as the file system's bytes) in the
    machine format asked for; False when the caller prints a table instead."""
    if sum([as_json, as_nl, as_paths]) > 1:
        raise click.UsageError("choose one of --json, --nl and --paths")
    if nul and not as_paths:
        raise click.UsageError("-0 goes with --paths")
    if as_json:
        echo_json(items)
    elif as_nl:
        echo_lines(items)
    elif as_paths:
        echo_paths(paths, nul)
    else:
        return False
    return True
