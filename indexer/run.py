"""``index_folder``: bring an index up to date with folders on disk, committing in batches."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from searchlib.devicedecode import DeviceJpegDecoder, device_decoding_supported, device_jpeg_available
from searchlib.embedding import Embedder
from searchlib.errors import ConfigError
from searchlib.index import Index
from searchlib.models import parse_model_spec
from searchlib.vectors import VectorIndex

from .commit import BatchCommitter
from .embedstage import EmbedStage
from .pipeline import Failed, decode_stream, default_workers
from .scan import FileEntry, ScanProblem, scan
from .split import DecodeSplit

log = logging.getLogger(__name__)

#: Commit at least this often (seconds): a killed run loses no more than this much work.
COMMIT_SECONDS = 5.0

#: Where JPEGs are decoded: ``cpu``: in the worker processes only; ``device``: every JPEG the
#: device decoder handles goes there (nvJPEG on CUDA; on a CPU device, torchvision's decoder in
#: this process); ``split``: both at once, shared in proportion to their measured speed
#: (:mod:`indexer.split`); ``auto``: ``split`` when the model runs on CUDA, else ``cpu``.
JPEG_DECODERS = ("auto", "cpu", "device", "split")


@dataclass
class Progress:
    """Reported to the ``progress`` callback as files come in from the decoders.

    ``done`` counts files finished: embedded (or given a stored vector) or failed.
    """

    done: int
    total: int
    failed: int


@dataclass
class IndexReport:
    """What an index run did (the CLI's ``--json`` output)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    moved: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    device_decoded: int = 0  # JPEGs decoded by the device decoder rather than the CPU workers

    def to_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "removed": self.removed, "moved": self.moved, "failed": self.failed, "failures": list(self.failures),
            "seconds": round(self.seconds, 3), "device_decoded": self.device_decoded,
        }

    def fail(self, path: str, error: str) -> None:
        self.failed += 1
        self.failures.append({"path": path, "error": error})
        log.warning("%s: %s", path, error)


def _resolve_roots(paths: Sequence[str | os.PathLike]) -> list[str]:
    if not paths:
        raise ConfigError("no PATH given; name the folders or files to index")
    roots = []
    for p in paths:
        root = os.path.abspath(os.path.expanduser(os.fspath(p)))
        if not os.path.exists(root):
            raise ConfigError(f"path not found: {root}")
        roots.append(root)
    return roots


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _choose_embedder(index: Index, model: str | None, checkpoint: str | None, device: str,
                     batch_size: int | None, backend: str) -> Embedder:
    stored = index.identity
    if model is None and checkpoint is None and stored is not None:
        # Keep using the index's own model; its weights load (and are checked) only when a file
        # actually needs embedding, so a run with nothing new does not pay for loading them.
        return Embedder(stored.to_spec(), device=device, batch_size=batch_size, expected=stored, backend=backend)
    embedder = Embedder(parse_model_spec(model, checkpoint), device=device, batch_size=batch_size, backend=backend)
    if stored is None:
        index.catalog.set_model_identity(embedder.identity)
    else:
        embedder.check_matches(stored)
    return embedder


def index_folder(index_dir: str | os.PathLike, *paths: str | os.PathLike, model: str | None = None,
                 checkpoint: str | None = None, device: str = "auto", batch_size: int | None = None,
                 workers: int | None = None, max_megapixels: float | None = 178.0,
                 exclude: Sequence[str] = (), include_hidden: bool = False,
                 follow_symlinks: bool = False,
                 progress: Callable[[Progress], None] | None = None,
                 commit_seconds: float = COMMIT_SECONDS, index_type: str | None = None,
                 backend: str = "auto", jpeg_decoder: str = "auto") -> IndexReport:
    """Index image files under ``paths`` into the index at ``index_dir``.

    New files are embedded, files whose size or mtime changed are re-embedded, unchanged files are
    skipped without reading, and rows of files gone from disk (inside ``paths``) are removed.

    Args:
        index_dir: the index directory (created if missing).
        paths: folders or files to index.
        model: model spec; default: the index's model, or :data:`searchlib.config.DEFAULT_MODEL`
            for a new index.
        checkpoint: local weights file for ``model`` (an architecture name).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per forward pass.
        workers: decode processes (default: one per core; 0 decodes in this process).
        max_megapixels: larger images are reported as failures instead of decoded.
        exclude: glob patterns of paths to skip.
        include_hidden: index dot-files and dot-directories too.
        follow_symlinks: follow symbolic links.
        progress: called with a :class:`Progress` after each file read, and once at the end.
        commit_seconds: commit at least this often; a killed run loses at most this much work.
        index_type: ``auto`` (exact below 200k vectors, IVF above) or a FAISS factory string;
            remembered by the index. None keeps the index's setting.
        backend: how the image tower runs (``auto``, ``torch``, ``bf16``, ``onnx``, ``onnx-int8``).
        jpeg_decoder: where JPEGs are decoded (:data:`JPEG_DECODERS`): ``auto`` splits them
            between the CPU workers and nvJPEG on a CUDA device, in proportion to measured speed,
            and uses the workers alone on a CPU device.

    Raises:
        SearchlibError: a bad path or option, a model problem, a model mismatch, or a busy index.
    """
    started = time.perf_counter()
    jpeg_decoder = (jpeg_decoder or "auto").lower()
    if jpeg_decoder not in JPEG_DECODERS:
        raise ConfigError(f"unknown JPEG decoder {jpeg_decoder!r}; use one of {', '.join(JPEG_DECODERS)}")
    roots = _resolve_roots(paths)
    report = IndexReport()
    index = Index.open_or_create(index_dir, device=device)
    try:
        with index.writer():
            if index_type:
                if index_type != "auto":
                    VectorIndex(8, index_type)  # fails early, with a clear message, on a bad string
                index.set_index_type(index_type)
            embedder = _choose_embedder(index, model, checkpoint, device, batch_size, backend)
            _run(index, embedder, roots, report, workers, max_megapixels, exclude, include_hidden,
                 follow_symlinks, progress, commit_seconds, jpeg_decoder)
    finally:
        index.close()
    report.seconds = time.perf_counter() - started
    return report


def _run(index: Index, embedder: Embedder, roots: list[str], report: IndexReport,
         workers: int | None, max_megapixels: float | None, exclude: Sequence[str],
         include_hidden: bool, follow_symlinks: bool,
         progress: Callable[[Progress], None] | None, commit_seconds: float, jpeg_decoder: str) -> None:
    catalog = index.catalog
    known = catalog.file_states()
    todo: list[FileEntry] = []
    seen: set[str] = set()
    for item in scan(roots, exclude, include_hidden, follow_symlinks):
        seen.add(item.path)  # a problem this time is no proof that the file is gone
        if isinstance(item, ScanProblem):
            report.fail(item.path, item.error)
            continue
        state = known.get(item.path)
        if state is not None and state[1:] == (item.size, item.mtime_ns):
            report.unchanged += 1
        else:
            todo.append(item)

    vectors = index.vectors
    # Mark and sweep: rows of files gone from the roots. Their vectors may come back as moves
    # (same bytes at a new path), so the sweep happens after the new files are placed.
    gone = {path: state[0] for path, state in known.items() if path not in seen and _under(path, roots)}
    workers = default_workers() if workers is None else workers
    max_pixels = int(max_megapixels * 1e6) if max_megapixels else None
    decoder, split = _device_decoding(embedder, jpeg_decoder, workers) if todo else (None, None)
    committer = BatchCommitter(index, vectors, embedder, known, report, catalog.hashes_of(gone.values()),
                               commit_seconds, stage=EmbedStage(embedder, decoder, split, max_pixels))
    try:
        if todo:
            _embed_all(todo, committer, embedder, catalog, report, workers, max_pixels, progress, split)
    finally:
        committer.close()  # waits for the writer thread: every batch handed over is committed
    if split is not None:
        report.device_decoded = split.device_files
        log.info("%s", split.summary())
    leftover = [i for i in gone.values() if i not in committer.moved_ids]
    if leftover:
        _, generation = catalog.write_batch([], removed=leftover)
        committer.writer.remove_vectors(leftover)
        index.adopt_vectors(vectors, generation)
        report.removed = len(leftover)
    index.finish_writing(force_rebuild=committer.rebuild)
    index.ensure_text_encoder(embedder)


def _device_decoding(embedder: Embedder, mode: str, workers: int
                     ) -> tuple[DeviceJpegDecoder | None, DecodeSplit | None]:
    """The device JPEG decoder and the CPU/device split for this run (None, None: workers only)."""
    if mode == "cpu" or (mode == "auto" and not embedder.device.startswith("cuda")):
        return None, None
    prep = embedder.preprocess
    if not device_decoding_supported(prep):
        if mode != "auto":
            raise ConfigError(f"the device JPEG decoder cannot reproduce this model's preprocessing "
                              f"({prep.interpolation}, {prep.resize_mode}); use --jpeg-decoder cpu")
        return None, None
    if not device_jpeg_available(embedder.device):
        if mode != "auto":
            raise ConfigError(f"torchvision cannot decode JPEGs on {embedder.device} here; use --jpeg-decoder cpu")
        return None, None
    # 'device' sends every JPEG it can; 'split' follows the measured costs from a first guess:
    # nvJPEG decodes a photo several times faster than a CPU core (start at half), torchvision's
    # CPU decoder is slower than the workers' reduced decode (start at a tenth). Files handed out
    # before the device's first batch is measured keep the guess, so it matters at the start.
    if mode == "device":
        split = DecodeSplit(workers, start=1.0, fixed=True)
    else:
        split = DecodeSplit(workers, start=0.5 if embedder.device.startswith("cuda") else 0.1)
    return DeviceJpegDecoder(prep, embedder.device), split


def _embed_all(todo: list[FileEntry], committer: BatchCommitter, embedder: Embedder, catalog,
               report: IndexReport, workers: int, max_pixels: int | None,
               progress: Callable[[Progress], None] | None, split: DecodeSplit | None) -> None:
    # Two model batches in flight keep the device fed; more would only hold more images in memory.
    ahead = 2 * embedder.batch_size
    stream = decode_stream(todo, embedder.preprocess, workers=workers, max_pixels=max_pixels,
                           known_hashes=catalog.all_hashes(), ahead=ahead, route=split)
    failed_before = report.failed
    for result in stream:
        if isinstance(result, Failed):
            report.fail(result.path, result.error)
        else:
            if split is not None and (result.pixels is not None or result.for_device):
                split.observe_file(result.seconds, result.offered, result.for_device)
            committer.push(result)
        if committer.ready():
            committer.flush()
        if progress:
            progress(Progress(committer.placed + report.failed - failed_before, len(todo), report.failed))
    committer.flush(final=True)
    if progress:
        progress(Progress(committer.placed + report.failed - failed_before, len(todo), report.failed))
