"""Functions spawned worker processes import by name during tests."""

import time

from searchlib.indexer.pipeline import _decode_job


def hanging_decode(args):
    """Like the real decode job, but files named 'hang*' never finish (a pathological decoder)."""
    entry = args[0]
    if "hang" in entry.path.rsplit("/", 1)[-1]:
        time.sleep(3600)
    return _decode_job(args)


def crashing_decode(args):
    """Like the real decode job, but the process dies outright on files named 'crash*' (as a
    decoder segfault would)."""
    import os

    entry = args[0]
    if "crash" in entry.path.rsplit("/", 1)[-1]:
        os._exit(139)
    return _decode_job(args)


def environment_probe(args):
    """Reports (as a failure's reason) how many OpenMP threads the decode worker it runs in was given."""
    import os

    from searchlib.indexer.pipeline import Failed

    return Failed(args[0].path, f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
