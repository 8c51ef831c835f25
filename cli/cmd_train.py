"""``searchlib train`` and ``searchlib evaluate``: CLIP's contrastive training, and its measurement."""

from __future__ import annotations

import sys

import click

from .output import echo_json, table


@click.command("train", short_help="Train or fine-tune a CLIP model.")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (generated captioned shapes) or a folder of images with captions "
                   "(captions.csv with path,caption columns, or a .txt file beside each image).")
@click.option("--model", default="searchlib-bilingual/random", show_default=True, metavar="SPEC",
              help="Model to start from: ARCH/random trains from scratch; ARCH/TAG, 'bundled' or ARCH "
                   "with --checkpoint fine-tunes.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Local weights for --model ARCH.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/bundled", show_default=True,
              help="Directory for checkpoint.pt (resumable) and the final model.safetensors.")
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True,
              help="Image-caption pairs per step (the contrastive batch).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=7e-4, show_default=True,
              help="Peak learning rate (linear warm-up, cosine decay).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: the same seed gives the same run.")
@click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train_cmd(data: str, model: str, checkpoint: str | None, out_dir: str, steps: int, batch_size: int,
              lr: float, seed: int, no_resume: bool, quiet: bool) -> None:
    """Train or fine-tune a CLIP model with CLIP's symmetric contrastive (InfoNCE) loss.

    The default trains the bundled model's architecture from scratch on synthetic captioned images
    (about 75 minutes on 2 CPU cores). Use the result with
    'searchlib index PATH --model searchlib-bilingual --checkpoint OUT/model.safetensors'.
    Interrupted runs continue from OUT/checkpoint.pt.
    """
    from searchlib.training import TrainConfig, train

    cfg = TrainConfig(model=model, checkpoint=checkpoint, data=data, out_dir=out_dir, steps=steps,
                      batch_size=batch_size, lr=lr, seed=seed, warmup=min(100, max(1, steps // 10)))
    bar = None

    def progress(s) -> None:
        nonlocal bar
        if quiet or not sys.stderr.isatty():
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=s.steps, initial=s.step - 1, unit="step", file=sys.stderr, desc="training")
        bar.update(1)
        bar.set_postfix(loss=f"{s.loss:.3f}")

    try:
        final = train(cfg, resume=not no_resume, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"saved {final}")


@click.command("evaluate", short_help="Measure a model on the held-out synthetic split.")
@click.option("--model", default="bundled", show_default=True, metavar="SPEC", help="Model to evaluate.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Local weights for --model ARCH.")
@click.option("--count", type=click.IntRange(min=20), default=500, show_default=True,
              help="Held-out images per split (mixed, and single-object).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def evaluate_cmd(model: str, checkpoint: str | None, count: int, device: str, as_json: bool) -> None:
    """Measure a model on the held-out synthetic split (never seen in training), in English and Chinese.

    Reports per language text->image recall@1/5/10 (a hit must fit every attribute the caption
    states; exact-pair R@5 beside it), image->text R@1, zero-shot accuracy for color and shape with
    averaged prompt templates, and how far the same query in both languages ("a red circle",
    "一个红色的圆形") retrieves the same top-5.
    """
    from searchlib.embedding import Embedder
    from searchlib.evaluation import evaluate
    from searchlib.models import parse_model_spec

    report = evaluate(Embedder(parse_model_spec(model, checkpoint), device=device), count=count)
    if as_json:
        echo_json(report.to_dict())
        return
    d = report.to_dict()
    langs = [lang for lang in ("en", "zh") if lang in d]
    names = [("text->image R@1 (single object)", "single_t2i_r1"), ("text->image R@5 (single object)", "single_t2i_r5"),
             ("text->image R@10 (single object)", "single_t2i_r10"), ("text->image R@1 (1-3 objects)", "t2i_r1"),
             ("text->image R@5 (1-3 objects)", "t2i_r5"), ("text->image R@10 (1-3 objects)", "t2i_r10"),
             ("text->image exact-pair R@5", "t2i_exact_r5"), ("image->text R@1", "i2t_r1"),
             ("zero-shot color accuracy", "color_accuracy"), ("zero-shot shape accuracy", "shape_accuracy")]
    rows = [[name] + [f"{d[lang][key]:.3f}" for lang in langs] for name, key in names]
    rows.append(["top-5 overlap, same query in both languages"] + [f"{d['cross_lingual_top5_overlap']:.3f}"] +
                [""] * (len(langs) - 1))
    click.echo(table(["metric"] + langs, rows, flex=0))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(train_cmd)
    group.add_command(evaluate_cmd)
