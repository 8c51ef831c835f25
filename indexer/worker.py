"""The entry point of a decode worker process (see :mod:`searchlib.indexer.pipeline`).

Started as ``python -c "from searchlib.indexer.worker import main; main()" FD``: a fresh
interpreter that imports only this package, Pillow and numpy, never the program that started it.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Serve decode jobs on the inherited socket named by ``sys.argv[1]``."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    conn = Connection(int(sys.argv[1]))
    try:
        sys.path[:0] = [p for p in conn.recv() if p not in sys.path]
        keys, worker = conn.recv()
    except (EOFError, OSError):
        return
    from .pipeline import worker_loop

    worker_loop(conn, keys, worker)
