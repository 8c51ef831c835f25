"""Training and fine-tuning CLIP models with CLIP's own objective.

The loss is the symmetric cross-entropy (InfoNCE) over the batch's image-text similarity matrix,
scaled by the model's learnable temperature (open_clip's ``ClipLoss``). The same loop trains the
bundled model from scratch on synthetic captioned images and fine-tunes any open_clip model on a
folder of image + caption pairs. Checkpoints hold everything needed to resume exactly.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, ImageDecodeError
from .imaging import Preprocess, decode_for_model, is_image_name, to_model_pixels
from .models import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """What and how to train.

    Attributes:
        model: the spec to start from (``ARCH/random`` trains from scratch).
        data: ``synthetic`` or a folder of images with captions (sidecar ``.txt`` files or a
            ``captions.csv`` with ``path,caption`` columns).
        out_dir: where checkpoints and the final ``model.safetensors`` go.
        steps: optimizer steps.
        batch_size: pairs per step (the contrastive batch).
        lr: peak learning rate (linear warm-up, cosine decay).
        warmup: warm-up steps.
        weight_decay: AdamW weight decay.
        seed: makes runs reproducible.
        checkpoint_every: steps between resumable checkpoints.
    """

    model: str = "searchlib-bilingual/random"
    checkpoint: str | None = None
    data: str = "synthetic"
    out_dir: str = "runs/bundled"
    steps: int = 5000
    batch_size: int = 128
    lr: float = 7e-4
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    checkpoint_every: int = 100


@dataclass
class TrainStep:
    """Reported to the progress callback after each step."""

    step: int
    steps: int
    loss: float
    seconds: float


# -- data ----------------------------------------------------------------------------------------
def synthetic_batch(prep: Preprocess, batch_size: int, seed: int, step: int) -> tuple[np.ndarray, list[str]]:
    """Batch ``step`` of the synthetic data: the same however a run resumes. Each sample's caption is
    in English or Chinese at random, sometimes partial (colour or shape left out)."""
    from .synthetic import LANGUAGES, make_sample

    rng = random.Random(seed * 1_000_003 + step)
    samples = [make_sample(rng, 128, partial=True) for _ in range(batch_size)]
    pixels = np.stack([to_model_pixels(s.image, prep) for s in samples])
    return pixels, [s.caption_in(rng.choice(LANGUAGES)) for s in samples]


def _synthetic_batches(prep: Preprocess, batch_size: int, seed: int, start_step: int
                       ) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Batches made ahead in a second process while the model trains on the current one.

    The process is a fresh interpreter (``python -c ...``) talking over its pipes: a spawned
    multiprocessing pool would re-import the caller's ``__main__``, which breaks scripts without a
    ``__name__ == "__main__"`` guard, and forking a process that runs torch's threads is unsafe.
    """
    import pickle
    import subprocess
    import sys

    ahead = 2
    proc = subprocess.Popen([sys.executable, "-c", "from searchlib.training import serve_synthetic_batches as s; s()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def ask(step: int) -> None:
        pickle.dump((prep, batch_size, seed, step), proc.stdin)
        proc.stdin.flush()

    try:
        for i in range(ahead):
            ask(start_step + i)
        step = start_step + ahead
        while True:
            try:
                batch = pickle.load(proc.stdout)
            except EOFError:
                raise RuntimeError(f"the synthetic batch process exited (code {proc.wait()})") from None
            ask(step)
            step += 1
            yield batch
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def serve_synthetic_batches() -> None:
    """The batch process: read ``(prep, batch_size, seed, step)`` requests from stdin, write
    :func:`synthetic_batch` results to stdout (pickled), until stdin closes."""
    import pickle
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's; it stops us
    reader, writer = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            prep, batch_size, seed, step = pickle.load(reader)
        except EOFError:
            return
        pickle.dump(synthetic_batch(prep, batch_size, seed, step), writer, protocol=pickle.HIGHEST_PROTOCOL)
        writer.flush()


def caption_corpus(samples: int = 40_000, seed: int = 12_345) -> Iterator[str]:
    """Captions in both languages (and the zero-shot prompts) to learn a tokenizer from."""
    from .analysis import TEMPLATES
    from .synthetic import COLORS, SHAPES, make_sample

    rng = random.Random(seed)
    for _ in range(samples):
        sample = make_sample(rng, 32, partial=rng.random() < 0.5, artefacts=False)
        yield sample.caption_in("en")
        yield sample.caption_in("zh")
    for word in list(COLORS) + SHAPES:
        for template in TEMPLATES:
            yield template.format(word)


def build_caption_tokenizer(folder: Path, vocab_size: int = 1024) -> Path:
    """Learn a byte-level BPE tokenizer from the synthetic captions (English and Chinese) and save it
    where transformers and the ``tokenizers`` package read it (``tokenizer.json``). Byte-level:
    any text tokenizes, words it never saw as several byte pieces."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # Chinese has no spaces: each CJK character is a piece of its own (as BERT does), so that
    # "红色" means the same wherever it appears instead of merging into whole phrases.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]"), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator((text.lower() for text in caption_corpus()), trainer)
    folder.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>").save_pretrained(str(folder))
    return folder


def read_caption_pairs(folder: Path) -> list[tuple[Path, str]]:
    """(image, caption) pairs from ``captions.csv`` (path,caption) or sidecar ``.txt`` files.

    Raises:
        ConfigError: no pairs found.
    """
    pairs: list[tuple[Path, str]] = []
    csv_path = folder / "captions.csv"
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("path") and row.get("caption"):
                    pairs.append(((folder / row["path"]).resolve(), row["caption"].strip()))
    else:
        for path in sorted(folder.rglob("*")):
            sidecar = path.with_suffix(".txt")
            if path.is_file() and is_image_name(path.name) and sidecar.is_file():
                pairs.append((path, sidecar.read_text(encoding="utf-8").strip()))
    if not pairs:
        raise ConfigError(f"no image/caption pairs in {folder}: add captions.csv (path,caption) "
                          "or a .txt file next to each image")
    return pairs


def _folder_batches(pairs: list[tuple[Path, str]], prep: Preprocess, batch_size: int, seed: int,
                    start_step: int) -> Iterator[tuple[np.ndarray, list[str]]]:
    step = start_step
    per_epoch = max(1, len(pairs) // batch_size)
    while True:
        epoch, within = divmod(step, per_epoch)
        order = list(range(len(pairs)))
        random.Random(seed + epoch).shuffle(order)
        chosen = [pairs[i] for i in order[within * batch_size:(within + 1) * batch_size]]
        pixels, captions = [], []
        for path, caption in chosen:
            try:
                pixels.append(decode_for_model(path.read_bytes(), prep)[0])
                captions.append(caption)
            except (OSError, ImageDecodeError) as e:
                log.warning("skipping %s: %s", path, e)
        if len(pixels) >= 2:
            yield np.stack(pixels), captions
        step += 1


# -- the loop ------------------------------------------------------------------------------------
def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _build(cfg: TrainConfig):
    from .embedding import _create_model
    from .models import parse_model_spec

    spec: ModelSpec = parse_model_spec(cfg.model, cfg.checkpoint)
    return spec, _create_model(spec)


def train(cfg: TrainConfig, resume: bool = True,
          progress: Callable[[TrainStep], None] | None = None) -> Path:
    """Train per ``cfg``; returns the path of the final fp16 ``model.safetensors``.

    With ``resume``, a ``checkpoint.pt`` in ``out_dir`` is continued from its step.
    """
    import open_clip
    import torch

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    spec, model = _build(cfg)
    pre = open_clip.get_model_preprocess_cfg(model)
    size = pre["size"][0] if isinstance(pre["size"], (tuple, list)) else pre["size"]
    prep = Preprocess(int(size), pre.get("interpolation", "bicubic"), pre.get("resize_mode", "shortest"))
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    tokenizer = open_clip.get_tokenizer(spec.arch)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    loss_fn = open_clip.ClipLoss()
    start = 0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resuming %s at step %d", ckpt_path, start)
    if cfg.data == "synthetic":
        batches = _synthetic_batches(prep, cfg.batch_size, cfg.seed, start)
    else:
        pairs = read_caption_pairs(Path(cfg.data))
        batches = _folder_batches(pairs, prep, cfg.batch_size, cfg.seed, start)
    model.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        pixels, captions = next(batches)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0) - mean) / std
        img = model.encode_image(x, normalize=True)
        txt = model.encode_text(tokenizer(captions), normalize=True)
        loss = loss_fn(img, txt, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
        if progress:
            progress(TrainStep(step + 1, cfg.steps, float(loss.detach()), time.perf_counter() - t0))
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(ckpt_path, model, opt, step + 1, cfg)
    model.eval()
    final = out / "model.safetensors"
    export_safetensors(model, final)
    return final


def _save_checkpoint(path: Path, model, opt, step: int, cfg: TrainConfig) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "config": asdict(cfg)}, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact


def export_safetensors(model, path: Path) -> None:
    """Write the model's weights as fp16 safetensors (loaded back as float32)."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
