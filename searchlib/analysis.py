"""CLIP's other uses over an index: zero-shot classification, tags, near-duplicate groups, export."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, SearchlibError
from .query import DUPLICATE_THRESHOLD
from .records import path_fields
from .vectormath import normalize

log = logging.getLogger(__name__)

#: Prompt templates averaged into one class vector (CLIP's prompt ensembling).
TEMPLATES = (
    "a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a close-up photo of a {}.",
    "a photo of the {}.", "a drawing of a {}.",
)
#: CLIP's logit scale: probabilities are softmax(100 * cosine).
LOGIT_SCALE = 100.0
#: The most labels one classification takes (ImageNet's 1,000 fit). Each label costs
#: ``len(TEMPLATES)`` encoder calls: 20,000 labels took a server 66 s of CPU.
MAX_LABELS = 1000
#: The longest label accepted (the text tower reads 77 tokens anyway).
MAX_LABEL_CHARS = 200
#: Near-duplicate thresholds below this are refused: images that far apart are not duplicates, and
#: every pair of a collection would be compared and joined (62 s for 12,100 images at 0.0001).
MIN_DUPLICATE_THRESHOLD = 0.5
#: The most similar pairs one near-duplicate search joins before it stops and asks for a higher
#: threshold; it also bounds one range-search batch, so memory stays bounded too.
MAX_DUPLICATE_PAIRS = 2_000_000


@dataclass
class Classification:
    """Zero-shot result for one image."""

    path: str
    label: str
    scores: dict[str, float]  # probability per label (softmax over labels)
    similarities: dict[str, float]  # cosine per label

    def to_dict(self) -> dict:
        return {**path_fields(self.path), "label": self.label, "scores": self.scores,
                "similarities": self.similarities}


def parse_labels(text: str | Sequence[str]) -> list[str]:
    """``"cat, dog,car"`` -> ``["cat", "dog", "car"]`` (at least two, no duplicates).

    Raises:
        ConfigError: fewer than two labels, more than :data:`MAX_LABELS`, or one longer than
            :data:`MAX_LABEL_CHARS` (checked before anything is embedded).
    """
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    labels = list(dict.fromkeys(x.strip() for x in items if x.strip()))
    if len(labels) < 2:
        raise ConfigError("--labels needs at least two comma-separated labels, e.g. 'cat,dog'")
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"{len(labels):,} labels; at most {MAX_LABELS:,} can be scored at once")
    if any(len(label) > MAX_LABEL_CHARS for label in labels):
        raise ConfigError(f"a label is longer than {MAX_LABEL_CHARS} characters; labels are short class names")
    return labels


def class_vectors(embed_texts, labels: Sequence[str], templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One unit vector per label: the mean of its prompt embeddings, renormalized."""
    prompts = [t.format(label) for label in labels for t in templates]
    vecs = embed_texts(prompts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return normalize(vecs)


def classify_vectors(image_vectors: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, cosines)``, each ``(n_images, n_labels)``."""
    sims = image_vectors @ classes.T
    logits = LOGIT_SCALE * sims
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, sims


def classify(index, paths: Sequence[str | os.PathLike], labels: Sequence[str]) -> list[Classification]:
    """Zero-shot classify image files with the index's model (stored vectors reused when indexed)."""
    classes = class_vectors(index.embed_texts, labels)
    vecs = np.stack([index.image_vector(p) for p in paths])
    probs, sims = classify_vectors(vecs, classes)
    return [Classification(str(Path(p).resolve()), labels[int(np.argmax(pr))],
                           {lb: round(float(x), 6) for lb, x in zip(labels, pr)},
                           {lb: round(float(x), 6) for lb, x in zip(labels, si)})
            for p, pr, si in zip(paths, probs, sims)]


def tag_index(index, labels: Sequence[str], min_probability: float = 0.0) -> dict[str, int]:
    """Give every indexed image its best label (if its probability reaches ``min_probability``).

    Replaces earlier tags from the same label set, through the index's writer: it holds the writer
    lock (a running ``searchlib index`` makes it fail with IndexBusyError instead of writing
    beside it) and moves the generation. Returns how many images got each label.
    """
    classes = class_vectors(index.embed_texts, labels)
    counts = {label.lower(): 0 for label in labels}
    rows: list[tuple[int, str, float]] = []
    with index.writer() as writer:
        with index.catalog.vector_snapshot() as snap:
            for ids, vecs in snap.chunks():
                probs, _ = classify_vectors(vecs, classes)
                best = probs.argmax(axis=1)
                for image_id, b, pr in zip(ids.tolist(), best, probs):
                    if pr[b] >= min_probability:
                        label = labels[int(b)].lower()
                        rows.append((image_id, label, float(pr[b])))
                        counts[label] += 1
        writer.replace_tags(list(counts), rows)
    return counts


def near_duplicates(index, threshold: float = DUPLICATE_THRESHOLD, batch: int = 2048,
                    max_pairs: int = MAX_DUPLICATE_PAIRS) -> list[list[dict]]:
    """Groups of images whose vectors are within ``threshold`` cosine of each other.

    Found with the FAISS index's range search (in C++, batched), joined transitively, largest
    groups first; each member is ``{"id", "path", "score"}`` with its similarity to the group's
    first image.

    Raises:
        ConfigError: ``threshold`` outside [:data:`MIN_DUPLICATE_THRESHOLD`, 1], or more than
            ``max_pairs`` similar pairs (the threshold is too low for this collection).
    """
    if not MIN_DUPLICATE_THRESHOLD <= threshold <= 1:
        raise ConfigError(f"--threshold must be in [{MIN_DUPLICATE_THRESHOLD}, 1] (near-duplicates score "
                          f"about 0.9 and above), not {threshold}")
    _, ids, vecs = index.catalog.snapshot_vectors()
    if len(ids) < 2:
        return []
    faiss_index = index.vectors.index
    parent = {int(i): int(i) for i in ids}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    # One batch can find at most batch * len(ids) pairs: keep that near max_pairs as well (at
    # least 16 queries a call, so a million images still take few calls).
    batch = max(16, min(batch, max_pairs // len(ids)))
    pairs = 0
    for start in range(0, len(ids), batch):
        lims, _, found = faiss_index.range_search(np.ascontiguousarray(vecs[start:start + batch]), threshold)
        pairs += int(lims[-1])
        if pairs > max_pairs:
            raise ConfigError(f"more than {max_pairs:,} pairs of images are within {threshold} of each other; "
                              "raise --threshold (near-duplicates score about 0.9 and above)")
        for row in range(len(lims) - 1):
            a = int(ids[start + row])
            for b in found[lims[row]:lims[row + 1]]:
                if int(b) != a and int(b) in parent:
                    ra, rb = find(a), find(int(b))
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(find(i), []).append(i)
    position = {int(i): n for n, i in enumerate(ids)}
    rows = index.catalog.images([i for g in groups.values() if len(g) > 1 for i in g])
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: rows[i].path)
        first = vecs[position[members[0]]]
        out.append([{"id": i, **path_fields(rows[i].path), "score": round(float(vecs[position[i]] @ first), 6)}
                    for i in members])
    out.sort(key=lambda g: (-len(g), g[0]["path"]))
    return out


EXPORT_SUFFIXES = (".npy", ".parquet")


def export_embeddings(index, target: str | os.PathLike) -> dict:
    """Write every vector with its id and path: ``.npy`` (+ ``.ids.json`` sidecar) or ``.parquet``.

    Paths are valid UTF-8 in both: a file name that is not gets U+FFFD in ``path`` and its
    original bytes in ``path_bytes`` (base64 in JSON, binary in Parquet; absent or null otherwise).
    Returns ``{"path", "count", "dim", "sidecar"?}``.

    Raises:
        ConfigError: an unknown suffix (checked before anything is created).
        SearchlibError: the target cannot be written.
    """
    target = Path(target).expanduser().resolve()
    if target.suffix not in EXPORT_SUFFIXES:
        raise ConfigError(f"cannot export to {target.name}: use a .npy or .parquet file name")
    if target.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise SearchlibError("writing .parquet needs pyarrow: pip install 'searchlib[parquet]'") from e
    _, ids, vecs = index.catalog.snapshot_vectors()
    rows = index.catalog.images(ids.tolist())
    fields_ = [path_fields(rows[int(i)].path) for i in ids]
    dim = int(vecs.shape[1]) if vecs.size else (index.identity.dim if index.identity else 0)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".npy":
            np.save(target, vecs.reshape(len(ids), dim).astype(np.float32))
            sidecar = target.with_suffix(".ids.json")
            side = {"ids": ids.tolist(), "paths": [f["path"] for f in fields_],
                    "model": index.identity.to_dict() if index.identity else None}
            if any("path_bytes" in f for f in fields_):
                side["path_bytes"] = [f.get("path_bytes") for f in fields_]
            sidecar.write_text(json.dumps(side, ensure_ascii=False), encoding="utf-8")
            return {"path": str(target), "sidecar": str(sidecar), "count": len(ids), "dim": dim}
        flat = pa.array(vecs.reshape(-1).astype(np.float32))
        raw = [base64.b64decode(f["path_bytes"]) if "path_bytes" in f else None for f in fields_]
        table = pa.table({"id": pa.array(ids), "path": pa.array([f["path"] for f in fields_], pa.string()),
                          "path_bytes": pa.array(raw, pa.binary()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
        pq.write_table(table, target)
        return {"path": str(target), "count": len(ids), "dim": dim}
    except OSError as e:
        raise SearchlibError(f"cannot write {target}: {e.strerror or e}") from e
