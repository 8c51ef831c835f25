"""Formatting for humans (tables) and machines (JSON)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence

import click


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def shorten(text: str, width: int) -> str:
    """Keep the end of long paths: the file name matters more than the root."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], flex: int = -1) -> str:
    """A plain aligned table; column ``flex`` is shortened to fit the terminal."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    term = shutil.get_terminal_size((120, 20)).columns
    fixed = sum(w + 2 for i, w in enumerate(widths) if i != (flex % len(headers)))
    flex_i = flex % len(headers)
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
