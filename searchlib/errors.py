"""The one error hierarchy of searchlib.

Every failure the library reports to a caller is a :class:`SearchlibError`; the CLI turns each into
a one-line message and an exit code. Messages say what happened and what to do next.
"""

from __future__ import annotations


class SearchlibError(Exception):
    """Base class of every error searchlib raises on purpose."""


class ConfigError(SearchlibError):
    """An option or argument has a value searchlib cannot use."""


class ModelError(SearchlibError):
    """A model spec is unknown or its weights cannot be loaded."""


class ModelUnavailableError(ModelError):
    """The model's weights are not on this machine and cannot be downloaded now."""


class ModelMismatchError(SearchlibError):
    """An index was built with one model and is being used with another."""


class IndexNotFoundError(SearchlibError):
    """No index exists at the given directory."""


class IndexCorruptError(SearchlibError):
    """The catalog cannot be read or has an unknown schema."""


class IndexTooNewError(SearchlibError):
    """The catalog was written by a newer searchlib, at a schema this one does not know."""


class CatalogUnavailableError(SearchlibError):
    """The catalog's database server cannot be reached (down, restarting, or the network is gone);
    work committed before is kept, and the same command succeeds once the server is back."""


class CatalogConnectionError(CatalogUnavailableError):
    """The catalog's database server cannot be reached or refuses the connection (at open)."""


class IndexBusyError(SearchlibError):
    """Another process holds the index for writing."""


class CatalogLockedError(IndexBusyError):
    """The SQLite catalog stayed locked by another process past the busy timeout (a reader or
    writer outside searchlib's own lock, a backup tool): a passing state, unlike a second writer."""


class DecodeBusyError(SearchlibError):
    """Large images were being decoded for longer than the caller agreed to wait for a share of the
    decode memory budget (a server under a flood of uploads); nothing was read, try again shortly."""


class ImageDecodeError(SearchlibError):
    """A file could not be read as an image."""


class IndexReadOnlyError(SearchlibError):
    """The index can be searched but not written (a read-only mount or missing permissions)."""


def read_only_error(where: str) -> IndexReadOnlyError:
    """The one message for writing to an index that can only be read (``where``: "the index at DIR"
    or "the catalog URL")."""
    return IndexReadOnlyError(f"{where} is read-only: searching works, writing does not; index into a writable copy")


class StorageFullError(SearchlibError):
    """The disk (or the database server) ran out of space while writing; committed work is kept."""


class QueryError(ConfigError):
    """A query or one of its parameters cannot be used (empty text, bad term, unknown id...)."""


class ImageNotFoundError(QueryError):
    """No indexed image has the id asked for."""
