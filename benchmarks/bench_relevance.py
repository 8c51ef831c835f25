"""Does ``--relevant`` separate "found it" from "nothing here"? Measured on generated folders whose
answers are known.

Each corpus is a folder of generated photos showing 50 of the 99 colour+shape pairs (12 photos per
pair, drawn with the widened generator: rotation, outlines, textures, occlusion, JPEG). Queries:
the 50 present pairs ("a red circle": has matches) and the 49 absent ones plus "zzzz qqqq" (50 with
none), in English and in Chinese ("一个红色的圆形"). A hit is relevant when the photo shows that
colour and that shape. For each query the top 20 are looked at (one page of results):

* precision: relevant hits kept / hits kept, over all 100 queries;
* recall: relevant hits kept / min(relevant in the corpus, 20), averaged over the match queries;
* F1 of the two, and the share of no-match queries that return nothing.

Compared: ``--relevant`` (the library's calibration), the best single ``--min-score`` chosen
afterwards on the same test queries (an oracle no user has), and ``--relative 0.15``.

``--fit`` fits the calibration on a training corpus made with another seed and another split of
pairs, for three feature sets (z only, margin only, both), reports each on the test corpus, and
prints the fitted :class:`~searchlib.relevance.Calibration` to put in ``searchlib/relevance.py``.

    python benchmarks/bench_relevance.py --fit            # choose and fit (prints the calibration)
    python benchmarks/bench_relevance.py --json benchmarks/results-relevance-cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchlib import open_index  # noqa: E402
from searchlib.indexer import index_folder  # noqa: E402
from searchlib.relevance import FEATURES, Calibration, Features, is_relevant  # noqa: E402
from searchlib.synthetic import COLOR_ZH, COLORS, MEASURE_ZH, SHAPE_ZH, SHAPES, make_sample  # noqa: E402

K = 20
PER_PAIR = 12
PAIRS = [(c, s) for c in COLORS for s in SHAPES]
#: Queries about things no generated photo shows (the issue's own examples among them), reported
#: apart from the absent colour+shape pairs, which are near misses ("a red star" among red circles
#: and blue stars). Not used for fitting.
UNRELATED = {
    "en": ["a cat", "a purple elephant", "zzzz qqqq", "a bowl of soup", "a portrait of an old man",
           "a city street at night", "a plate of sushi", "a snowy mountain", "a dog on the beach", "a wedding"],
    "zh": ["一只猫", "一头紫色的大象", "嗯嗯 啊啊", "一碗汤", "一位老人的肖像", "夜晚的城市街道", "一盘寿司", "雪山",
           "海滩上的狗", "婚礼"],
}


def query_text(color: str, shape: str, lang: str) -> str:
    if lang == "zh":
        return f"一{MEASURE_ZH.get(shape, ['个'])[0]}{COLOR_ZH[color][0]}的{SHAPE_ZH[shape][0]}"
    return f"a {color} {shape}"


def make_corpus(folder: Path, seed: int) -> tuple[dict[str, tuple[str, str]], list, list]:
    """Photos of 50 pairs chosen by ``seed``; returns (truth by path, present pairs, absent pairs)."""
    rng = random.Random(seed)
    pairs = PAIRS[:]
    rng.shuffle(pairs)
    present, absent = pairs[:50], pairs[50:]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    truth = {}
    for i in range(len(present) * PER_PAIR):
        color, shape = present[i % len(present)]
        sample = make_sample(rng, 160, shape=shape, color=color)
        path = folder / f"{i:04d}.jpg"
        sample.image.save(path, quality=90)
        truth[str(path)] = (color, shape)
    return truth, present, absent


def collect(index_dir: Path, truth: dict, present: list, absent: list, langs: list[str],
            unrelated: bool = False) -> list[dict]:
    """Top-K hits of every query, with the features relevance is computed from; with ``unrelated``
    the :data:`UNRELATED` queries only."""
    rows = []
    with open_index(index_dir) as index:
        scorer = index.relevance_scorer()
        if unrelated:
            queries = [(lang, text, None, False) for lang in langs for text in UNRELATED[lang]]
        else:
            queries = [(lang, c, s, True) for lang in langs for c, s in present]
            queries += [(lang, c, s, False) for lang in langs for c, s in absent]
            queries += [(lang, None, None, False) for lang in langs]  # nonsense: matches nothing
        for lang, color, shape, has in queries:
            if shape is None:
                text = color or ("zzzz qqqq" if lang == "en" else "嗯嗯 啊啊")
            else:
                text = query_text(color, shape, lang)
            hits = index.search(text, k=K)
            vector = index.query_vector(text)
            ids, vectors = index.catalog.vectors_of([h.id for h in hits])
            order = {i: n for n, i in enumerate(ids.tolist())}
            f = scorer.features(vector, np.array([h.score for h in hits]), vectors[[order[h.id] for h in hits]])
            for rank, h in enumerate(hits):
                rows.append({"query": text, "lang": lang, "has_matches": has, "rank": rank, "score": h.score,
                             "relevance": h.relevance, "relevant": truth[h.path] == (color, shape),
                             **{name: float(getattr(f, name)[rank]) for name in FEATURES}})
    return rows


def evaluate(rows: list[dict], keep) -> dict:
    """Precision, recall, F1 and the no-match queries answered with nothing, for a ``keep(row, best)`` rule."""
    by_query: dict[tuple, list[dict]] = {}
    for r in rows:
        by_query.setdefault((r["lang"], r["query"]), []).append(r)
    kept_total = kept_right = 0
    recalls, empty = [], []
    for hits in by_query.values():
        best = hits[0]["score"]
        kept = [h for h in hits if keep(h, best)]
        kept_total += len(kept)
        kept_right += sum(h["relevant"] for h in kept)
        if hits[0]["has_matches"]:
            recalls.append(sum(h["relevant"] for h in kept) / min(PER_PAIR, K))
        else:
            empty.append(not kept)
    precision = kept_right / kept_total if kept_total else 1.0
    recall = float(np.mean(recalls)) if recalls else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3),
            "no_match_empty": round(float(np.mean(empty)), 3)}


def best_fixed(rows: list[dict]) -> tuple[float, dict]:
    grid = np.round(np.arange(-0.2, 1.0, 0.0025), 4)
    results = [(float(t), evaluate(rows, lambda h, best, t=t: h["score"] >= t)) for t in grid]
    return max(results, key=lambda tr: tr[1]["f1"])


def fit(rows: list[dict], features: tuple[str, ...]) -> Calibration:
    """Logistic regression (Newton's method) on the training hits, then the bias moved so that 0.5
    is the cut that maximizes F1 on the training queries."""
    x = np.array([[1.0] + [r[f] for f in features] for r in rows])
    y = np.array([float(r["relevant"]) for r in rows])
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + 1e-6 * np.eye(len(w))
        w -= np.linalg.solve(hessian, x.T @ (p - y))

    def calibration(bias: float) -> Calibration:
        return Calibration(bias=round(bias, 4), weights=tuple((f, round(float(v), 4)) for f, v in zip(features, w[1:])))

    scored = []
    for shift in np.arange(-4, 4.01, 0.05):
        cal = calibration(float(w[0] + shift))
        scored.append((evaluate(rows, lambda h, best, cal=cal: keep(cal, h))["f1"], float(shift)))
    return calibration(float(w[0] + max(scored)[1]))


def keep(cal: Calibration, hit: dict) -> bool:
    one = Features(*(np.array([hit[f]], dtype=np.float32) for f in FEATURES))
    return bool(cal.probability(one)[0] >= 0.5)


def build(workdir: Path, seed: int, name: str) -> tuple[Path, dict, list, list, float]:
    truth, present, absent = make_corpus(workdir / f"{name}-photos", seed)
    index_dir = workdir / f"{name}-index"
    if index_dir.exists():
        shutil.rmtree(index_dir)
    t0 = time.perf_counter()
    index_folder(index_dir, workdir / f"{name}-photos", model="bundled", device="cpu")
    return index_dir, truth, present, absent, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-relevance"))
    parser.add_argument("--fit", action="store_true", help="fit the calibration on a training corpus and print it")
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    langs = ["en", "zh"]
    out: dict = {"k": K, "photos_per_pair": PER_PAIR, "queries_per_language": {"match": 50, "no_match": 50}}

    test_dir, truth, present, absent, took = build(args.workdir, args.test_seed, "test")
    test = collect(test_dir, truth, present, absent, langs)
    unrelated = collect(test_dir, truth, present, absent, langs, unrelated=True)
    if args.fit:
        train_dir, t_truth, t_present, t_absent, _ = build(args.workdir, args.train_seed, "train")
        train = collect(train_dir, t_truth, t_present, t_absent, langs)
        out["fitted"] = {}
        for features in (("z",), ("margin",), ("margin_n",), ("z", "margin"), ("z", "margin_n")):
            cal = fit(train, features)
            res = {lang: evaluate([r for r in test if r["lang"] == lang], lambda h, best, cal=cal: keep(cal, h))
                   for lang in langs}
            res["unrelated_empty"] = evaluate(unrelated, lambda h, best, cal=cal: keep(cal, h))["no_match_empty"]
            out["fitted"]["+".join(features)] = {"calibration": {"bias": cal.bias, "weights": dict(cal.weights)}, **res}
            print(f"fitted on {'+'.join(features):9s}: {cal}\n   test: {res}")
    groups = langs + ["en+zh"]  # en+zh: one threshold for the queries of both languages
    for lang in groups:
        rows = [r for r in test if lang == "en+zh" or r["lang"] == lang]
        threshold, fixed = best_fixed(rows)
        out[lang] = {
            "relevant": evaluate(rows, lambda h, best: is_relevant(h["relevance"])),
            "best_fixed_min_score": {"min_score": threshold, **fixed},
            "relative_0.15": evaluate(rows, lambda h, best: h["score"] >= best - 0.15 * abs(best)),
        }
        out[lang]["f1_gain_over_best_fixed"] = round(out[lang]["relevant"]["f1"] - fixed["f1"], 3)
        away = [r for r in unrelated if lang == "en+zh" or r["lang"] == lang]
        out[lang]["unrelated_queries_empty"] = {
            "relevant": evaluate(away, lambda h, best: is_relevant(h["relevance"]))["no_match_empty"],
            "best_fixed_min_score": evaluate(away, lambda h, best, t=threshold: h["score"] >= t)["no_match_empty"],
            "relative_0.15": 0.0,  # the top hit always passes a cut relative to itself
        }
    print(f"\n{'':6s} {'method':28s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'no-match empty':>15s} "
          f"{'unrelated empty':>16s}")
    for lang in groups:
        for name, key in (("--relevant", "relevant"), ("best fixed --min-score", "best_fixed_min_score"),
                          ("--relative 0.15", "relative_0.15")):
            r = out[lang][key]
            label = name + (f" {r['min_score']:.3f}" if key == "best_fixed_min_score" else "")
            away = out[lang]["unrelated_queries_empty"][key]
            print(f"{lang:6s} {label:28s} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:6.3f} "
                  f"{r['no_match_empty']:15.3f} {away:16.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
