"""Evaluating a CLIP model on the held-out synthetic split, in English and in Chinese.

Retrieval counts a result as relevant when the image fits every attribute its caption states
(several images can fit "a red circle"); the stricter exact-pair numbers are reported beside it.
Zero-shot classification is CLIP's classifier use: one text embedding per class, averaged over
prompt templates, and the class with the highest cosine wins. Cross-lingual agreement asks the
same question in both languages ("a red circle", "一个红色的圆形", for every colour and shape) and
compares the top-5 images they retrieve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .embedding import Embedder
from .imaging import to_model_pixels
from .synthetic import COLOR_ZH, COLORS, SHAPE_ZH, SHAPES, Sample, generate, matches
from .vectormath import normalize

#: Seed of the held-out split; training batches use seeds ``seed * 1_000_003 + step`` (seed 0: < 10^7).
HELDOUT_SEED = 987_654_321

COLOR_TEMPLATES = {"en": ["a photo of a {} object", "a {} shape", "something {}", "a drawing of a {} thing"],
                   "zh": ["一个{}的东西", "{}的图形", "一张{}物体的照片", "画着{}东西的图"]}
SHAPE_TEMPLATES = {"en": ["a photo of a {}", "a drawing of a {}", "a {}", "an image showing a {}"],
                   "zh": ["一个{}", "一张{}的照片", "画着{}的图片", "图片里有{}"]}


def color_word(color: str, lang: str) -> str:
    return color if lang == "en" else COLOR_ZH[color][0]


def shape_word(shape: str, lang: str) -> str:
    return shape if lang == "en" else SHAPE_ZH[shape][0]


def simple_query(color: str, shape: str, lang: str) -> str:
    """``a red circle`` / ``一个红色的圆形``."""
    if lang == "en":
        return f"a {color} {shape}" if color[0] not in "aeiou" else f"an {color} {shape}"
    return f"一个{color_word(color, 'zh')}的{shape_word(shape, 'zh')}"


@dataclass
class EvalReport:
    """Evaluation figures (fractions in 0..1); ``languages[lang]`` holds the per-language figures."""

    count: int
    languages: dict[str, dict[str, float]] = field(default_factory=dict)
    cross_lingual_top5_overlap: float = 0.0
    cross_lingual_identical_top5: float = 0.0

    def to_dict(self) -> dict:
        out: dict = {"count": self.count,
                     "cross_lingual_top5_overlap": round(self.cross_lingual_top5_overlap, 4),
                     "cross_lingual_identical_top5": round(self.cross_lingual_identical_top5, 4)}
        for lang, figures in self.languages.items():
            out[lang] = {k: round(v, 4) for k, v in figures.items()}
        return out


def _image_vectors(embedder: Embedder, samples: list[Sample]) -> np.ndarray:
    prep = embedder.preprocess
    return embedder.embed_pixels(np.stack([to_model_pixels(s.image, prep) for s in samples]))


def _t2i_recall(samples: list[Sample], img: np.ndarray, txt: np.ndarray, lang: str, ks=(1, 5, 10)):
    sims = txt @ img.T
    order = np.argsort(-sims, axis=1)
    relevant = np.array([[matches(q, g, lang) for g in samples] for q in samples])
    out = {k: float(np.mean([relevant[i, order[i, :k]].any() for i in range(len(samples))])) for k in ks}
    exact5 = float(np.mean([i in order[i, :5] for i in range(len(samples))]))
    return out, exact5, relevant


def zero_shot(embedder: Embedder, img: np.ndarray, labels: list[str], templates: list[str]) -> np.ndarray:
    """Index of the best label per image (prompt-ensembled class embeddings)."""
    classes = [embedder.embed_texts([t.format(label) for t in templates]).mean(axis=0) for label in labels]
    return np.argmax(img @ normalize(np.stack(classes)).T, axis=1)


def _language(embedder: Embedder, lang: str, mixed, single, img_m, img_s) -> dict[str, float]:
    txt_m = embedder.embed_texts([s.caption_in(lang) for s in mixed])
    txt_s = embedder.embed_texts([s.caption_in(lang) for s in single])
    rec_m, exact5, relevant = _t2i_recall(mixed, img_m, txt_m, lang)
    rec_s, _, _ = _t2i_recall(single, img_s, txt_s, lang)
    best_caption = np.argmax(img_m @ txt_m.T, axis=1)  # image -> text: the caption must describe it
    i2t = float(np.mean([relevant[best_caption[i], i] for i in range(len(mixed))]))
    colors = list(COLORS)
    color_pred = zero_shot(embedder, img_s, [color_word(c, lang) for c in colors], COLOR_TEMPLATES[lang])
    shape_pred = zero_shot(embedder, img_s, [shape_word(s, lang) for s in SHAPES], SHAPE_TEMPLATES[lang])
    return {"t2i_r1": rec_m[1], "t2i_r5": rec_m[5], "t2i_r10": rec_m[10], "t2i_exact_r5": exact5,
            "single_t2i_r1": rec_s[1], "single_t2i_r5": rec_s[5], "single_t2i_r10": rec_s[10], "i2t_r1": i2t,
            "color_accuracy": float(np.mean([colors[p] == s.color for p, s in zip(color_pred, single)])),
            "shape_accuracy": float(np.mean([SHAPES[p] == s.shape for p, s in zip(shape_pred, single)]))}


def evaluate(embedder: Embedder, count: int = 500, seed: int = HELDOUT_SEED, languages=("en", "zh")) -> EvalReport:
    """Evaluate ``embedder`` on ``count`` held-out mixed samples and ``count`` single-object ones,
    with each sample's caption in every language of ``languages``."""
    mixed = generate(count, seed)
    single = generate(count, seed + 1, single_object=True)
    img_m, img_s = _image_vectors(embedder, mixed), _image_vectors(embedder, single)
    report = EvalReport(count)
    for lang in languages:
        report.languages[lang] = _language(embedder, lang, mixed, single, img_m, img_s)
    if len(languages) >= 2:
        pairs = [(c, s) for c in COLORS for s in SHAPES]
        tops = {}
        for lang in languages[:2]:
            q = embedder.embed_texts([simple_query(c, s, lang) for c, s in pairs])
            tops[lang] = np.argsort(-(q @ img_s.T), axis=1)[:, :5]
        a, b = tops[languages[0]], tops[languages[1]]
        overlap = [len(set(x) & set(y)) / 5 for x, y in zip(a, b)]
        report.cross_lingual_top5_overlap = float(np.mean(overlap))
        report.cross_lingual_identical_top5 = float(np.mean([o == 1.0 for o in overlap]))
    return report
