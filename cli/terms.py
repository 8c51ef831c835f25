"""What the command line's query arguments mean: text, or an image file named by its path.

The library treats every string as text; deciding that an argument names an image is the
caller's job. Here a term is an image only when it is clearly a path — it contains a ``/`` or
starts with ``~`` or ``.`` (``./cat.jpg``) — and names an existing file, so ``searchlib search
sun`` stays a text search even in a folder holding a file named ``sun``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import click

from searchlib.query import QueryTerm, parse_query, parse_term


def looks_like_path(text: str) -> bool:
    """Whether a query term is clearly a file path: it has a ``/`` or starts with ``~`` or ``.``."""
    return "/" in text or text.startswith(("~", "."))


def _resolved(term: QueryTerm) -> QueryTerm:
    if term.kind != "text" or not looks_like_path(term.value):
        return term
    path = os.path.abspath(os.path.expanduser(term.value))
    if os.path.isfile(path):
        return QueryTerm(Path(path), term.weight, "image")
    if os.path.exists(path):
        raise click.BadParameter(f"{term.value} is not a regular file; an image term must name an image file")
    return term


def query_terms(query: str, add: Sequence[str] = (), subtract: Sequence[str] = (),
                images: Sequence[str] = ()) -> list[QueryTerm]:
    """The terms of QUERY, ``--add``, ``--subtract`` and ``--image`` (paths become image terms)."""
    terms = parse_query(query) if query.strip() else []
    terms += [QueryTerm(Path(os.path.abspath(p)), 1.0, "image") for p in images]
    terms += [parse_term(t) for t in add] + [parse_term(t, -1.0) for t in subtract]
    return [_resolved(t) for t in terms]
