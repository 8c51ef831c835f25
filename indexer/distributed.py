"""Distributed embedding on Ray: decoding on CPU tasks, the model on an actor pool, commits on the
driver (``searchlib index PATH... --ray [ADDRESS]``).

The shape is Ray Data's: the driver's plan (files to read, after comparing the folders with the
catalog) becomes a dataset of work units; ``map`` decodes each unit's files in CPU tasks (1 CPU
each, on any node); ``map_batches`` runs the model on a pool of actors (``num_gpus=1`` each where
the cluster has GPUs, else CPU actors), each loading the model once; the driver iterates over the
embedded rows and commits them through the same :class:`~searchlib.index.IndexWriter` as the local
pipeline. Ray Data streams the stages (bounded memory, backpressure), retries failed tasks and
restarts lost actors.

Exactly once: a retried task can deliver a file again; the driver drops paths it has already
placed, and the catalog turns an insert of a known path into an update (its ``path`` is unique),
so no retry ever duplicates a row. Killing the driver loses at most the batches not yet committed;
the next run finds the rest unchanged.

Every node must read the files at the same paths (a shared filesystem) and have searchlib
installed; only vectors and metadata travel back to the driver (about 2 KB per image).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime

import numpy as np

from searchlib.errors import ConfigError
from searchlib.imaging import Preprocess
from searchlib.models import ModelIdentity
from searchlib.records import ImageMetadata

from .pipeline import Decoded, Failed, decode_file, hash_key
from .scan import FileEntry

log = logging.getLogger(__name__)

#: Files per work unit (a decode task): big enough that task overhead stays small, small enough
#: that a lost task costs little.
UNIT_FILES = 64


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address``, or start a local one (``None``). Returns whether this
    call started Ray (and so must shut it down)."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs Ray: pip install 'searchlib[ray]'") from e
    if ray.is_initialized():
        return False
    # Ray's C++ core notes (e.g. on actor constructor arguments, which Ray Data's own map workers
    # always have) would land on stderr: only fatal ones may.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, **quiet)
    except Exception as e:  # a wrong address, an unreachable head
        raise ConfigError(f"cannot join the Ray cluster at {address or 'a new local instance'}: {e}") from e
    import ray.data

    for name in ("ray", "ray.data"):  # the library never prints; Ray's notes would (after its import)
        logging.getLogger(name).setLevel(logging.CRITICAL)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return True


def _units(entries: list[FileEntry], workers: int) -> list[dict]:
    size = max(1, min(UNIT_FILES, len(entries) // max(1, 4 * workers) or 1))
    return [{"unit": n, "paths": [e.path for e in entries[i:i + size]],
             "sizes": [e.size for e in entries[i:i + size]], "mtimes": [e.mtime_ns for e in entries[i:i + size]]}
            for n, i in enumerate(range(0, len(entries), size))]


_KEYS: dict[str, np.ndarray] = {}


def _decode_unit(prep: tuple, max_pixels: int | None, keys_ref) -> Callable[[dict], list[dict]]:
    """The per-unit decode function run in Ray tasks (files whose hash the catalog knows are only
    read and hashed; their stored vectors are reused on the driver)."""

    def decode(unit: dict) -> list[dict]:
        from searchlib.indexer import pipeline

        ref_id = str(keys_ref)
        if ref_id not in _KEYS:
            import ray

            _KEYS.clear()
            _KEYS[ref_id] = ray.get(keys_ref)
        pipeline.init_worker(_KEYS[ref_id])
        rows = []
        for path, size, mtime in zip(unit["paths"], unit["sizes"], unit["mtimes"]):
            result = decode_file(FileEntry(path, size, mtime), Preprocess(*prep), max_pixels)
            if isinstance(result, Decoded) and result.segments:  # rows here carry one picture each
                result = Failed(result.path, "videos are not indexed with --ray yet: index them without --ray "
                                "(then --retry-failed)", result.size, result.mtime_ns)
            rows.append(_row(result))
        return rows

    return decode


def _row(result: Decoded | Failed) -> dict:
    """A flat, Arrow-friendly row: pixels as bytes (empty when not decoded), metadata as JSON."""
    path = os.fsencode(result.path)  # bytes: a name that is not UTF-8 cannot be an Arrow string
    if isinstance(result, Failed):
        return {"path": path, "error": result.error, "size": result.size, "mtime_ns": result.mtime_ns,
                "content_hash": "", "metadata": "", "pixels": b""}
    meta = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(result.metadata).items()}
    pixels = result.pixels.tobytes() if result.pixels is not None else b""
    return {"path": path, "error": "", "size": result.size, "mtime_ns": result.mtime_ns,
            "content_hash": result.content_hash, "metadata": json.dumps(meta), "pixels": pixels}


class EmbedActor:
    """A Ray actor holding the model; embeds the decoded rows of a batch (others get no vector).

    Configured through the class attribute ``config`` (see :func:`_actor_class`): Ray keeps
    constructor arguments in its object store, and restarting an actor whose arguments were lost
    would fail.
    """

    config: dict = {}

    def __init__(self):
        from searchlib.embedding import Embedder

        c = self.config
        ident = ModelIdentity.from_dict(c["identity"])
        self.size = ident.image_size
        self.embedder = Embedder(ident.to_spec(), device=c["device"], expected=ident, backend=c["backend"],
                                 batch_size=c["batch_size"])

    def __call__(self, batch: dict) -> dict:
        pixels = batch.pop("pixels")
        decoded = np.array([len(p) > 0 for p in pixels], dtype=bool)
        dim = self.embedder.identity.dim
        vectors = np.zeros((len(pixels), dim), dtype=np.float32)
        if decoded.any():
            side = self.size
            stack = np.stack([np.frombuffer(p, dtype=np.uint8).reshape(side, side, 3) for p in pixels[decoded]])
            vectors[decoded] = self.embedder.embed_pixels(stack)
        batch["vector"] = vectors
        batch["embedded"] = decoded
        return batch


def _actor_class(**config) -> type:
    return type("EmbedActor", (EmbedActor,), {"config": config, "__module__": __name__})


def embedded_rows(entries: list[FileEntry], identity: ModelIdentity, known_hashes: list[str], device: str,
                  backend: str, batch_size: int | None, max_pixels: int | None) -> Iterator[dict]:
    """Run the Ray pipeline over ``entries``; yields rows (numpy batches, row by row) on the driver."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    use_gpu = gpus > 0 and device in ("auto", "cuda")
    actors = gpus if use_gpu else max(1, cpus // 2)
    keys = np.unique(np.fromiter((hash_key(h) for h in known_hashes), dtype=np.uint64))
    keys_ref = ray.put(keys)
    prep = (identity.image_size, identity.interpolation, identity.resize_mode)
    units = _units(entries, cpus)
    log.info("Ray: %d work units on %d CPUs, %d %s model actors", len(units), cpus, actors,
             "GPU" if use_gpu else "CPU")
    dataset = (ray.data.from_items(units, override_num_blocks=len(units))
               .flat_map(_decode_unit(prep, max_pixels, keys_ref), num_cpus=1)
               .map_batches(_actor_class(identity=identity.to_dict(), backend=backend,
                                         device="cuda" if use_gpu else "cpu", batch_size=batch_size),
                            compute=ActorPoolStrategy(size=actors), batch_size=batch_size or 32,
                            num_gpus=1 if use_gpu else 0, num_cpus=0.5 if use_gpu else 1, batch_format="numpy"))
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):  # blocks as they come
        for i in range(len(batch["path"])):
            yield {key: batch[key][i] for key in batch}


def to_result(row: dict) -> tuple[Decoded | Failed, np.ndarray | None]:
    """A driver-side record for one row, and its vector (None when it was not embedded)."""
    path = os.fsdecode(bytes(row["path"]))
    if row["error"]:
        return Failed(path, str(row["error"]), int(row["size"]), int(row["mtime_ns"])), None
    meta = json.loads(str(row["metadata"]))
    if meta.get("taken_at"):
        meta["taken_at"] = datetime.fromisoformat(meta["taken_at"])
    decoded = Decoded(path, int(row["size"]), int(row["mtime_ns"]), str(row["content_hash"]), ImageMetadata(**meta),
                      None)
    return decoded, (np.asarray(row["vector"], dtype=np.float32) if bool(row["embedded"]) else None)
