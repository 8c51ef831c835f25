"""Calibrated relevance: a figure per hit that means the same across queries, and a cut that keeps
only the hits judged relevant.

A raw cosine says little across queries: with the first bundled model, real matches of "a red circle"
score 0.67, while "zzzz qqqq", which matches nothing, still scores 0.59 at the top. Where
"relevant" begins moves with the query, so no single ``min_score`` separates "found it" from
"nothing here". Two facts about a hit do carry across queries:

* **How far the hit stands out from the collection** (``z``): its cosine minus the mean cosine of
  the same query against a fixed random sample of the index's vectors (the *background*), in
  units of their standard deviation. A query that matches nothing scores everything alike.
* **Whether the query describes the image better than generic captions do** (``margin``): the
  hit's cosine with the query minus its best cosine with a fixed bank of generic captions
  (:data:`BANK`: "a photo", "a dog", "a landscape", "a circle"...). This one needs no background,
  so it also works on a folder of ten images.

A logistic model over both (:class:`Calibration`) turns them into a probability; a hit is relevant
when it reaches 0.5. Its weights were fitted on synthetic corpora with known answers and checked
on held-out ones (``benchmarks/bench_relevance.py``; figures and the choice of features in
``benchmarks/RESULTS.md``). Relevance is computed for text queries; hits of image and vector
queries carry none (their cosines live on another scale).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tempfiles import temp_beside

log = logging.getLogger(__name__)

#: Vectors drawn from the index to learn what a query scores against the collection at large.
BACKGROUND_SAMPLE = 2048
#: Below this many vectors the background says little; ``z`` is then left out and
#: :data:`SMALL_COLLECTION_CALIBRATION`, fitted on the margin alone, decides.
MIN_BACKGROUND = 64
#: Where the bank's vectors are kept in an index directory (recomputed when the model changes).
BANK_FILE = "relevance-bank.npz"
#: Where the background sample is kept in an index directory (drawn again when the generation moves).
BACKGROUND_FILE = "relevance-background.npz"

#: Bank captions this close to the query (text cosine) say the same thing and are left out of its
#: margin: the query "a dog" must not be measured against the bank's own "a dog".
SAME_AS_QUERY = 0.95
#: Generic captions a relevant hit should fit worse than its query. They cover what photo folders
#: hold, in broad strokes, plus plain shapes and colours; none names a specific combination.
BANK: tuple[str, ...] = (
    "a photo", "a picture", "an image", "a photo of something", "a picture of an object", "a close-up photo",
    "a blurry photo", "a dark photo", "a bright photo", "a colorful picture", "a pattern", "a texture",
    "a shape", "a drawing", "a simple drawing", "an abstract picture", "a plain background",
    "a photo of a person", "a photo of people", "a portrait", "a selfie", "a crowd", "a child", "a baby",
    "a photo of an animal", "a dog", "a cat", "a bird", "a horse", "a fish", "an insect",
    "a landscape", "a mountain", "a beach", "the sea", "a lake", "a river", "a forest", "a field",
    "the sky", "clouds", "a sunset", "snow", "a desert", "a garden", "a park",
    "a city street", "a building", "a house", "a room", "a kitchen", "an office", "a shop",
    "a car", "a bicycle", "a bus", "a train", "a boat", "an airplane", "a road",
    "food", "a meal on a plate", "a drink", "fruit", "a cake",
    "a plant", "a tree", "a flower", "leaves",
    "a document", "text", "a screenshot", "a sign", "a book", "a phone", "a computer",
    "furniture", "a chair", "a table", "clothes", "shoes", "a toy", "a ball", "a tool",
    "a circle", "a square", "a triangle", "a star", "a line", "dots", "stripes",
    "something red", "something blue", "something green", "something yellow", "something black",
    "something white",
)


FEATURES = ("z", "margin", "margin_n")


@dataclass(frozen=True)
class Calibration:
    """``P(relevant) = sigmoid(bias + sum(weights[f] * feature f))`` over :data:`FEATURES`.

    Attributes:
        bias: the logistic model's intercept.
        weights: a weight per feature name (features not named weigh 0).
    """

    bias: float
    weights: tuple[tuple[str, float], ...]

    def probability(self, features: Features) -> np.ndarray:
        logit = np.full(len(features.z), self.bias, dtype=np.float64)
        for name, weight in self.weights:
            logit += weight * np.asarray(getattr(features, name), dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))


@dataclass(frozen=True)
class Features:
    """What relevance is computed from, per hit.

    Attributes:
        z: the hit's cosine minus the query's mean cosine over the background, over their spread
            (NaN without a background).
        margin: the hit's cosine minus its best cosine with a bank caption (captions that say
            what the query says, text cosine >= :data:`SAME_AS_QUERY`, left out).
        margin_n: ``margin`` over the spread of the hit's cosines with the bank captions: free of
            the model's cosine scale (real CLIP models score in 0.1-0.35, the bundled one in 0.3-0.8).
    """

    z: np.ndarray
    margin: np.ndarray
    margin_n: np.ndarray


#: Fitted by ``benchmarks/bench_relevance.py --fit`` on the training corpora (see RESULTS.md).
#: z and margin_n, not the raw margin: both are free of the model's cosine scale, so the one
#: calibration carries to models it was not fitted on; on the held-out corpus z+margin scored an
#: F1 within 0.015 of it (one or two queries' worth), z alone 0.05 less.
DEFAULT_CALIBRATION = Calibration(bias=-11.066, weights=(("z", 4.3124), ("margin_n", 2.3879)))
#: For collections too small for a background (fewer than :data:`MIN_BACKGROUND` vectors):
#: margin_n alone, fitted the same way. (Putting a typical match's z in for the missing one let
#: almost any hit of a nonsense query through in a folder of 60 photos.)
SMALL_COLLECTION_CALIBRATION = Calibration(bias=-1.183, weights=(("margin_n", 3.4447),))


class RelevanceScorer:
    """Scores hits of text queries against a background sample and the caption bank.

    Args:
        background: ``(m, d)`` unit vectors sampled from the index (may be empty).
        bank: ``(len(BANK), d)`` unit vectors of the bank captions in the index's model.
        calibration: the logistic model (default: :data:`DEFAULT_CALIBRATION`; with a background
            of fewer than :data:`MIN_BACKGROUND` vectors, :data:`SMALL_COLLECTION_CALIBRATION`).
    """

    def __init__(self, background: np.ndarray, bank: np.ndarray, calibration: Calibration | None = None):
        self.background = np.ascontiguousarray(background, dtype=np.float32)
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.has_background = len(self.background) >= MIN_BACKGROUND
        default = DEFAULT_CALIBRATION if self.has_background else SMALL_COLLECTION_CALIBRATION
        self.calibration = calibration or default

    def features(self, query: np.ndarray, scores: np.ndarray, hit_vectors: np.ndarray) -> Features:
        """The :class:`Features` of hits with cosines ``scores`` and vectors ``hit_vectors``."""
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if self.has_background:
            against = self.background @ query
            spread = max(float(against.std()), 1e-6)
            z = (scores - float(against.mean())) / spread
        else:  # unknown: NaN, so a calibration that weighs z cannot be used by mistake
            z = np.full(len(scores), np.nan, dtype=np.float32)
        if len(scores) == 0:
            empty = np.zeros(0, dtype=np.float32)
            return Features(z.astype(np.float32), empty, empty)
        bank = self.bank[self.bank @ query < SAME_AS_QUERY] if len(self.bank) else self.bank
        if len(bank) < 2:  # a degenerate bank, every caption like the query: keep them all
            bank = self.bank
        generic = np.asarray(hit_vectors, dtype=np.float32) @ bank.T
        margin = scores - generic.max(axis=1)
        margin_n = margin / np.maximum(generic.std(axis=1), 1e-6)
        return Features(z.astype(np.float32), margin.astype(np.float32), margin_n.astype(np.float32))

    def relevance(self, query: np.ndarray, scores: np.ndarray, hit_vectors: np.ndarray) -> np.ndarray:
        """Probability that each hit is relevant (0..1)."""
        return self.calibration.probability(self.features(query, scores, hit_vectors)).astype(np.float32)


def is_relevant(relevance: float | None) -> bool:
    """The cut that ``search(relevant=True)`` applies."""
    return relevance is not None and relevance >= 0.5


# -- the bank's vectors, kept in the index directory --------------------------------------------
def _bank_key(model: dict) -> str:
    text = json.dumps({"model": model, "bank": list(BANK)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_vectors(path: Path, key: str) -> np.ndarray | None:
    """The vectors saved at ``path`` under ``key``; None when absent, unreadable, of another key,
    or not finite."""
    try:
        with np.load(path) as saved:
            if str(saved["key"]) != key:
                return None
            vectors = np.asarray(saved["vectors"], dtype=np.float32)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent or damaged
        return None
    return vectors if vectors.ndim == 2 and np.isfinite(vectors).all() else None


def _save_vectors(path: Path, key: str, vectors: np.ndarray, what: str) -> None:
    """Keep ``vectors`` at ``path`` under ``key`` (atomically: temp file + rename); a read-only or
    full disk only means the next process computes them again."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, key=np.array(key), vectors=np.asarray(vectors, dtype=np.float32))
        os.replace(tmp, path)
    except OSError as e:
        log.info("could not save the %s in %s: %s", what, path.parent, e)
        tmp.unlink(missing_ok=True)


def load_bank(directory: Path, model: dict) -> np.ndarray | None:
    """The bank's vectors saved in ``directory`` for this model (its ``to_dict()``), or None."""
    vectors = _load_vectors(directory / BANK_FILE, _bank_key(model))
    return vectors if vectors is not None and vectors.shape[0] == len(BANK) else None


def save_bank(directory: Path, model: dict, vectors: np.ndarray) -> None:
    """Keep the bank's vectors in ``directory`` (atomically: temp file + rename)."""
    _save_vectors(directory / BANK_FILE, _bank_key(model), vectors, "relevance bank")


# -- the background sample, kept in the index directory per catalog generation ------------------
def background_key(generation: int, model: dict) -> str:
    """What a kept background sample must match: the catalog's generation (any change to the
    vectors moves it), the model, and how the sample is drawn."""
    text = json.dumps({"generation": int(generation), "model": model, "n": BACKGROUND_SAMPLE, "draw": 1},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_background(directory: Path, key: str) -> np.ndarray | None:
    """The background sample kept in ``directory`` under ``key`` (:func:`background_key`), or None.
    A cold search reads this instead of drawing some 2,000 vectors from the catalog (a quarter
    of a second at 100k on 2 cores)."""
    return _load_vectors(directory / BACKGROUND_FILE, key)


def save_background(directory: Path, key: str, vectors: np.ndarray) -> None:
    """Keep the background sample in ``directory`` under ``key``."""
    _save_vectors(directory / BACKGROUND_FILE, key, vectors, "relevance background sample")
