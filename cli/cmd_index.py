"""``searchlib index``: embed image folders into the index."""

from __future__ import annotations

import sys

import click

from .main import index_option, main
from .output import echo_json


@main.command("index")
@index_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--model", "model", metavar="SPEC",
              help="Model: ARCH/TAG (open_clip, e.g. ViT-B-32/laion2b_s34b_b79k), 'bundled', or ARCH "
                   "with --checkpoint. Default: the index's model, or ViT-B-32/laion2b_s34b_b79k for a "
                   "new index.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=str),
              help="Local weights file (.safetensors preferred, or a torch checkpoint) for --model ARCH.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model runs; auto picks CUDA when a GPU is present (fp16 there).")
@click.option("--backend", type=click.Choice(["auto", "torch", "bf16", "onnx", "onnx-int8"]), default="auto",
              show_default=True,
              help="How the image model runs: auto = PyTorch fp16 on GPU, ONNX Runtime on CPU (fastest "
                   "measured here); torch, bf16 (CPU autocast), onnx, onnx-int8 (int8 weights) force one.")
@click.option("--jpeg-decoder", type=click.Choice(["auto", "cpu", "device", "split"]), default="auto",
              show_default=True,
              help="Where JPEGs are decoded: cpu = the decode workers; device = the model's device "
                   "(nvJPEG on a GPU) for every JPEG it handles; split = both at once, shared by "
                   "their measured speed; auto = split when the model runs on CUDA, else cpu. "
                   "Progressive/CMYK JPEGs, other formats and device failures decode on the CPU. "
                   "Without a GPU, device and split use torchvision's decoder in the main process, "
                   "which is slower than the workers.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per model pass (default 256 on GPU, 32 on CPU).")
@click.option("--workers", type=click.IntRange(min=0),
              help="Decode processes (default: one per core; 0 = decode in the main process).")
@click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=178.0, show_default=True,
              help="Images larger than this are reported as failures instead of decoded.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths or names matching GLOB (repeatable).")
@click.option("--include-hidden", is_flag=True, help="Also index dot-files and dot-directories.")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links to files and directories.")
@click.option("--index-type", metavar="TYPE",
              help="FAISS index: 'auto' (exact up to 200k images, then IVF trained from the stored "
                   "vectors, its recall measured), 'Flat', or a factory string like 'IVF4096,Flat' or "
                   "'HNSW32'. Remembered by the index.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
@click.pass_obj
def index_cmd(obj: dict, paths: tuple[str, ...], model: str | None, checkpoint: str | None, device: str,
              backend: str, jpeg_decoder: str, batch_size: int | None, workers: int | None, max_megapixels: float,
              exclude: tuple[str, ...], include_hidden: bool, follow_symlinks: bool, index_type: str | None,
              as_json: bool, quiet: bool) -> None:
    """Index images under PATH... (folders or files); re-runs only embed what changed.

    Unchanged files (same size and mtime) are skipped without reading; changed files are
    re-embedded; files gone from disk under PATH are removed from the index. Bad files are
    reported and skipped, never fatal. The JSON report has added, updated, unchanged, removed,
    moved, failed, failures [{path, error}], seconds and device_decoded (JPEGs decoded on the GPU).
    """
    from indexer import index_folder

    bar = None
    show_bar = not quiet and sys.stderr.isatty()

    def progress(p) -> None:
        nonlocal bar
        if not show_bar or p.total == 0:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=p.total, unit="img", file=sys.stderr, dynamic_ncols=True, desc="indexing")
        bar.update(p.done - bar.n)

    try:
        report = index_folder(
            obj["index_dir"], *paths, model=model, checkpoint=checkpoint, device=device,
            batch_size=batch_size, workers=workers, max_megapixels=max_megapixels, exclude=exclude,
            include_hidden=include_hidden, follow_symlinks=follow_symlinks, progress=progress,
            index_type=index_type, backend=backend, jpeg_decoder=jpeg_decoder,
        )
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        for failure in report.failures[:20]:
            click.echo(f"skipped {failure['path']}: {failure['error']}", err=True)
        if len(report.failures) > 20:
            click.echo(f"... and {len(report.failures) - 20} more skipped files (see --json)", err=True)
    if as_json:
        echo_json(report.to_dict())
    elif not quiet:
        r = report
        click.echo(f"indexed {r.added} new, {r.updated} updated, {r.moved} moved, {r.unchanged} unchanged, "
                   f"{r.removed} removed, {r.failed} failed in {r.seconds:.1f}s")
