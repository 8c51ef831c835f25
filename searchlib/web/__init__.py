"""``searchlib serve``: an HTTP API and a web page over one index (FastAPI; see :mod:`.app`)."""

from .app import create_app

__all__ = ["create_app"]
