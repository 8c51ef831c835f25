"""Connecting to a catalog database: URLs, engines, SQLite settings, and the one place where
database failures become searchlib errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from ..errors import CatalogLockedError, CatalogUnavailableError, IndexCorruptError, StorageFullError, read_only_error

#: What a database server that went away says (psycopg / libpq), besides SQLAlchemy's own
#: disconnect detection.
_UNREACHABLE = ("server closed the connection", "connection refused", "could not connect", "connection failed",
                "connection timeout expired", "terminating connection", "the database system is shutting down",
                "the database system is starting up", "consuming input failed", "no connection to the server")


def translate_error(context) -> None:
    """One place where database failures become searchlib errors with a one-line message."""
    original = context.original_exception
    message = str(original).lower()
    url = "the catalog"
    if context.engine is not None:
        u = context.engine.url
        url = (u.database or "").removeprefix("file:").split("?")[0] if u.get_backend_name() == "sqlite" \
            else masked_url(u)
    if context.engine is not None and context.engine.url.get_backend_name() != "sqlite" and (
            context.is_disconnect or any(m in message for m in _UNREACHABLE)):
        u = context.engine.url
        where = f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"
        raise CatalogUnavailableError(f"lost the connection to the catalog at {where} ({first_line(original)}); "
                                      "work committed so far is kept: run again when the database is "
                                      "back") from original
    if "malformed" in message or "not a database" in message or "disk i/o error" in message:
        reason = str(original).splitlines()[0]
        raise IndexCorruptError(f"the catalog {url} is damaged and cannot be read ({reason}); restore it from a "
                                "backup, or move the index directory away and index again") from original
    if "database or disk is full" in message or "no space left" in message or "disk full" in message:
        raise StorageFullError(f"disk full while writing the catalog {url}; free some space and run again "
                               "(work committed so far is kept)") from original
    if "readonly database" in message or "read-only" in message:
        raise read_only_error(f"the catalog {url}") from original
    if "database is locked" in message:
        raise CatalogLockedError(f"the catalog {url} stayed locked by another process; try again when it "
                             "has finished") from original

#: Query parameters of a database URL that carry a secret (libpq's connection keywords).
_SECRET_PARAMS = ("password", "sslpassword")


def masked_url(url) -> str:
    """A database URL fit for messages, logs and ``info``: the password, given as ``user:pw@`` or as
    ``?password=`` (any case, any number of times), shown as ``***``. The one masking function: every
    place that shows a catalog URL goes through it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        # Not a URL SQLAlchemy reads: mask whatever looks like a password in the text itself.
        text_url = re.sub(r"(?i)([?&](?:ssl)?password=)[^&#]*", r"\1***", str(url))
        return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", text_url)
    query = {k: ("***" if k.lower() in _SECRET_PARAMS else v) for k, v in u.query.items()}
    return u.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__

def resolve_url(url: str | os.PathLike) -> tuple[str, Path | None]:
    """``(sqlalchemy url, sqlite file or None)``: a bare path or ``sqlite:///path`` is SQLite."""
    text_url = os.fspath(url)
    if re.match(r"^[a-z][a-z0-9+]*://", text_url):
        if text_url.startswith("sqlite:///"):
            path = Path(text_url[len("sqlite:///"):]).expanduser().resolve()
            return f"sqlite:///{path}", path
        if text_url.startswith("postgres://") or text_url.startswith("postgresql://"):
            text_url = "postgresql+psycopg://" + text_url.split("://", 1)[1]
        return text_url, None
    path = Path(text_url).expanduser().resolve()
    return f"sqlite:///{path}", path

def sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cur.execute("PRAGMA busy_timeout=30000")  # readers and one writer wait instead of failing
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

def read_only_sqlite(path: Path) -> Engine:
    """An engine that never writes. ``mode=ro`` sees an indexer's commits, but a WAL database whose
    shared-memory file cannot be created (a read-only mount) only opens as ``immutable``, which is
    then true: nothing can change it there."""
    import sqlite3
    from urllib.parse import quote

    from sqlalchemy.engine import URL

    # The path is percent-quoted inside the file: URI, so '?', '#' and '%' in it stay part of the name.
    uri = f"file:{quote(str(path))}"
    for key, value in (("mode", "ro"), ("immutable", "1")):
        try:
            sqlite3.connect(f"{uri}?{key}={value}", uri=True).execute("SELECT 1 FROM sqlite_master").close()
        except sqlite3.Error:
            continue
        engine = create_engine(URL.create("sqlite", database=uri, query={key: value, "uri": "true"}))
        event.listen(engine, "connect", _sqlite_read_pragmas)
        return engine
    # fails with the real reason
    engine = create_engine(URL.create("sqlite", database=uri, query={"mode": "ro", "uri": "true"}))
    event.listen(engine, "connect", _sqlite_read_pragmas)
    return engine

def _sqlite_read_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
