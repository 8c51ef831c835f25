"""``searchlib index``: embed image folders into the index."""

from __future__ import annotations

import os
import sys
import time

import click

from .common import index_option
from .output import clean, echo_json


class _Status:
    """What the run is doing, on stderr from its first second: a line per phase, then a bar."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.phase = None
        self.last_scan = 0.0

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        if p.phase == "scanning":
            now = time.monotonic()
            if self.phase != "scanning" or now - self.last_scan > 0.5:
                click.echo(f"\rscanning... {p.done} files", err=True, nl=False)
                self.last_scan = now
        elif p.phase == "loading model":
            self._end_line()
            click.echo("loading the model...", err=True)
        elif p.phase == "embedding":
            self._end_line()
            if self.bar is None and p.total:
                from tqdm import tqdm

                self.bar = tqdm(total=p.total, unit="img", file=sys.stderr, dynamic_ncols=True, desc="indexing")
            if self.bar is not None:
                self.bar.update(p.done - self.bar.n)
        elif p.phase == "finishing":
            self.close()
            click.echo("saving the vector index...", err=True)
        self.phase = p.phase

    def _end_line(self) -> None:
        if self.phase == "scanning":
            click.echo("", err=True)
            self.phase = None

    def close(self) -> None:
        self._end_line()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


#: The options that say how files are indexed, shared by ``index`` and ``watch``.
_RUN_OPTIONS = [
    click.option("--model", "model", metavar="SPEC",
                 help="Model: ARCH/TAG (open_clip, e.g. ViT-B-32/laion2b_s34b_b79k), 'bundled', or ARCH "
                      "with --checkpoint. Default: the index's model, or ViT-B-32/laion2b_s34b_b79k for a "
                      "new index."),
    click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=str),
                 help="Local weights file (.safetensors preferred, or a torch checkpoint) for --model ARCH."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                 help="Where the model runs; auto picks CUDA when a GPU is present (fp16 there)."),
    click.option("--backend", type=click.Choice(["auto", "torch", "bf16", "onnx", "onnx-int8"]), default="auto",
                 show_default=True,
                 help="How the image model runs: auto = PyTorch fp16 on GPU, ONNX Runtime on CPU (fastest "
                      "measured here); torch, bf16 (CPU autocast), onnx, onnx-int8 (int8 weights) force one."),
    click.option("--jpeg-decoder", type=click.Choice(["auto", "cpu", "device", "split"]), default="auto",
                 show_default=True,
                 help="Where JPEGs are decoded: cpu = the decode workers; device = the model's device "
                      "(nvJPEG on a GPU) for every JPEG it handles; split = both at once, shared by "
                      "their measured speed; auto = split when the model runs on CUDA, else cpu."),
    click.option("--batch-size", type=click.IntRange(min=1),
                 help="Images per model pass (default 256 on GPU, 32 on CPU)."),
    click.option("--workers", type=click.IntRange(min=0),
                 help="Decode processes (default: one per core; 0 = decode in the main process)."),
    click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=178.0, show_default=True,
                 help="Images larger than this (or whose decoded bytes exceed an RGB image of this size) are "
                      "reported as failures instead of decoded."),
    click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths or names matching GLOB (repeatable)."),
    click.option("--include-hidden", is_flag=True, help="Also index dot-files and dot-directories."),
    click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links to files and directories."),
    click.option("--raw-pairs", type=click.Choice(["jpeg", "both"]), default="jpeg", show_default=True,
                 help="A RAW file with a JPEG (or HEIF) of the same name in its folder: jpeg = index the JPEG "
                      "only and show the RAW as its sibling on hits; both = index both."),
    click.option("--retry-failed", is_flag=True,
                 help="Try again files that failed in an earlier run and have not changed since (they are "
                      "skipped otherwise)."),
    click.option("--index-type", metavar="TYPE",
                 help="FAISS index: 'auto' (chosen by size and --max-index-memory, its recall measured), 'Flat', or "
                      "a factory string like 'IVF4096,Flat' or 'HNSW32'. Remembered by the index."),
    click.option("--max-index-memory", metavar="SIZE",
                 help="Memory budget for the vector index (e.g. 2GiB; default a quarter of RAM). It picks the index: "
                      "exact while it fits, then IVF, then OPQ+IVF+PQ codes on disk, memory-mapped. Remembered."),
    click.option("--rerank", type=click.IntRange(0, 10_000), metavar="N",
                 help="On compressed (PQ) indexes, re-rank the best N candidates exactly from the stored vectors "
                      "(default 100; 0 off). Remembered."),
    click.option("--vector-dtype", type=click.Choice(["float32", "float16"]),
                 help="How a new index stores vectors in its catalog: float16 halves the bytes (cosine error about "
                      "1e-4; see README)."),
    click.option("--read-text/--no-read-text", "read_text", default=None,
                 help="Read the words in photos (signs, screenshots, receipts; offline OCR) so that queries and "
                      "'search --text' find them. Off for a new index: on two CPU cores it costs several times "
                      "the embedding (see README). Turning it on reads photos indexed before too. Remembered."),
    click.option("--commit-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
                 help="Commit what is embedded at least this often: a killed or interrupted run loses at most "
                      "this much work."),
]


def run_options(command):
    """Add the indexing options (model, device, workers, excludes, ...) to ``command``."""
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


@click.command("index", short_help="Embed the images under the given folders (incremental).")
@index_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@run_options
@click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Embed on Ray: decoding in CPU tasks and the model on actors (one per GPU where there are "
                   "GPUs). Alone, starts a local Ray; with ADDRESS (e.g. ray://head:10001 or head:6379), joins "
                   "that cluster, which needs --catalog postgresql://... . Every node must read the files at the "
                   "same paths.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary line.")
@click.pass_obj
def index_cmd(obj: dict, paths: tuple[str, ...], model: str | None, checkpoint: str | None, device: str,
              backend: str, jpeg_decoder: str, batch_size: int | None, workers: int | None, max_megapixels: float,
              exclude: tuple[str, ...], include_hidden: bool, follow_symlinks: bool, raw_pairs: str,
              retry_failed: bool,
              index_type: str | None, max_index_memory: str | None, rerank: int | None, vector_dtype: str | None,
              read_text: bool | None, ray: str | None, commit_seconds: float, as_json: bool, quiet: bool) -> None:
    """Index images and camera RAW files under PATH... (folders or files); re-runs only embed what changed.

    Unchanged files (same size and mtime) are skipped without reading; changed files are
    re-embedded; files gone from disk under PATH are removed from the index. Bad files are
    reported and skipped, never fatal, and not retried while they stay unchanged (--retry-failed).
    The JSON report has added, updated, unchanged, removed, moved, failed, failed_before,
    failures [{path, error}], seconds, device_decoded (JPEGs decoded on the GPU) and cancelled.
    """
    from searchlib.indexer import IndexOptions, index_folder

    if ray not in (None, "local") and os.path.exists(ray) and "://" not in ray:
        raise click.UsageError(f"--ray took {ray!r} as a cluster address: put --ray after the paths, or write "
                               "--ray=ADDRESS")
    if not paths:
        raise click.UsageError("give the folders or files to index, e.g. 'searchlib index ~/Pictures'")
    options = IndexOptions(model=model, checkpoint=checkpoint, device=device, batch_size=batch_size,
                           workers=workers, max_megapixels=max_megapixels, exclude=exclude,
                           include_hidden=include_hidden, follow_symlinks=follow_symlinks,
                           retry_failed=retry_failed, index_type=index_type, backend=backend,
                           jpeg_decoder=jpeg_decoder, catalog=obj.get("catalog"), ray=ray,
                           max_index_memory=max_index_memory, rerank=rerank, vector_dtype=vector_dtype,
                           commit_seconds=commit_seconds, raw_pairs=raw_pairs, read_text=read_text)
    status = _Status(not quiet and sys.stderr.isatty())
    try:
        report = index_folder(obj["index_dir"], *paths, options=options, progress=status)
    finally:
        status.close()
    if not quiet:
        for failure in report.failures[:20]:
            click.echo(f"skipped {clean(failure['path'])}: {failure['error']}", err=True)
        if len(report.failures) > 20:
            click.echo(f"... and {len(report.failures) - 20} more skipped files (see --json)", err=True)
    if as_json:
        echo_json(report.to_dict())
    elif not quiet:
        r = report
        before = f", {r.failed_before} failed before (not retried; --retry-failed)" if r.failed_before else ""
        click.echo(f"indexed {r.added} new, {r.updated} updated, {r.moved} moved, {r.unchanged} unchanged, "
                   f"{r.removed} removed, {r.failed} failed{before} in {r.seconds:.1f}s")


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(index_cmd)
