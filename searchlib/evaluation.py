"""Evaluating a CLIP model on the held-out synthetic split.

Retrieval counts a result as relevant when the image fits every attribute its caption states
(several images can fit "a red circle"); the stricter exact-pair numbers are reported beside it.
Zero-shot classification is CLIP's classifier use: one text embedding per class, averaged over
prompt templates, and the class with the highest cosine wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .embedding import Embedder, normalize
from .imaging import to_model_pixels
from .synthetic import COLORS, SHAPES, Sample, generate, matches

#: Seed of the held-out split; training batches use seeds ``seed * 1_000_003 + step`` (seed 0: < 10^7).
HELDOUT_SEED = 987_654_321

COLOR_TEMPLATES = ["a photo of a {} object", "a {} shape", "something {}", "a drawing of a {} thing"]
SHAPE_TEMPLATES = ["a photo of a {}", "a drawing of a {}", "a {}", "an image showing a {}"]


@dataclass
class EvalReport:
    """Evaluation figures (fractions in 0..1)."""

    count: int
    t2i_r1: float
    t2i_r5: float
    t2i_r10: float
    t2i_exact_r5: float
    i2t_r1: float
    color_accuracy: float
    shape_accuracy: float
    single_t2i_r1: float
    single_t2i_r5: float
    single_t2i_r10: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _image_vectors(embedder: Embedder, samples: list[Sample]) -> np.ndarray:
    prep = embedder.preprocess
    return embedder.embed_pixels(np.stack([to_model_pixels(s.image, prep) for s in samples]))


def _t2i_recall(samples: list[Sample], img: np.ndarray, txt: np.ndarray, ks=(1, 5, 10)):
    sims = txt @ img.T
    order = np.argsort(-sims, axis=1)
    relevant = np.array([[matches(q, g) for g in samples] for q in samples])
    out = {}
    for k in ks:
        top = order[:, :k]
        out[k] = float(np.mean([relevant[i, top[i]].any() for i in range(len(samples))]))
    exact5 = float(np.mean([i in order[i, :5] for i in range(len(samples))]))
    return out, exact5, relevant


def zero_shot(embedder: Embedder, img: np.ndarray, labels: list[str], templates: list[str]) -> np.ndarray:
    """Index of the best label per image (prompt-ensembled class embeddings)."""
    classes = []
    for label in labels:
        classes.append(embedder.embed_texts([t.format(label) for t in templates]).mean(axis=0))
    return np.argmax(img @ normalize(np.stack(classes)).T, axis=1)


def evaluate(embedder: Embedder, count: int = 500, seed: int = HELDOUT_SEED) -> EvalReport:
    """Evaluate ``embedder`` on ``count`` held-out mixed samples and ``count`` single-object ones."""
    mixed = generate(count, seed)
    single = generate(count, seed + 1, single_object=True)
    img_m, img_s = _image_vectors(embedder, mixed), _image_vectors(embedder, single)
    txt_m = embedder.embed_texts([s.caption for s in mixed])
    txt_s = embedder.embed_texts([s.caption for s in single])
    rec_m, exact5, relevant = _t2i_recall(mixed, img_m, txt_m)
    rec_s, _, _ = _t2i_recall(single, img_s, txt_s)
    # image -> text: the best caption must describe the image (relevant[caption, image]).
    best_caption = np.argmax(img_m @ txt_m.T, axis=1)
    i2t = float(np.mean([relevant[best_caption[i], i] for i in range(count)]))
    color_labels = list(COLORS)
    color_pred = zero_shot(embedder, img_s, color_labels, COLOR_TEMPLATES)
    shape_pred = zero_shot(embedder, img_s, SHAPES, SHAPE_TEMPLATES)
    color_acc = float(np.mean([color_labels[p] == s.color for p, s in zip(color_pred, single)]))
    shape_acc = float(np.mean([SHAPES[p] == s.shape for p, s in zip(shape_pred, single)]))
    return EvalReport(count, rec_m[1], rec_m[5], rec_m[10], exact5, i2t, color_acc, shape_acc,
                      rec_s[1], rec_s[5], rec_s[10])
