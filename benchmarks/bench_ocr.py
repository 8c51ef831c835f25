"""Reading words in photos: accuracy, cost as a ratio to indexing without it, and fusion quality.

One run, one machine, every figure a ratio or a rate measured in that run:

* word recall of the reader on generated signs (fonts, rotation, blur, JPEG) and screenshots, and
  whether it invents text on scenes without words;
* the extra indexing time of ``--read-text`` as a ratio to the same ``searchlib index`` without it
  (default-size model ViT-B-32, random weights: the same compute as the default model), and the
  detector pass alone, per photo, as a ratio to the embedding time per photo;
* fusion: P@1 of word queries ("pharmacy" -> the PHARMACY sign) with fusion against CLIP alone,
  and P@5 of scene queries (colour + shape) with fusion against CLIP alone, on one index of the
  bundled model holding signs and scenes.

    python benchmarks/bench_ocr.py --json benchmarks/results-ocr-cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from searchlib import open_index  # noqa: E402
from searchlib.ocr import TextReader, fold  # noqa: E402
from searchlib.synthetic import make_sample  # noqa: E402
from tests.textimages import SIGN_WORDS, write_corpus  # noqa: E402

EXE = str(Path(sys.executable).with_name("searchlib"))
SCENES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "star")]


def timed_index(index_dir: Path, folder: Path, model: str, *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([EXE, "--index", str(index_dir), "index", str(folder), "--model", model, "-q", *extra],
                   check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signs", type=int, default=15)
    ap.add_argument("--screens", type=int, default=5)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--json")
    args = ap.parse_args()
    out: dict = {"machine": "2 CPU cores, no GPU"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = write_corpus(root / "photos", signs=args.signs, screenshots=args.screens, scenes=args.scenes)
        n = len(truth)

        # Accuracy and the detector alone, in this process.
        reader = TextReader()
        images = {p: Image.open(p).convert("RGB") for p in truth}
        reader.has_text(next(iter(images.values())))  # load the engine outside the timings
        t0 = time.perf_counter()
        read = {p: reader.read(img) or "" for p, img in images.items()}
        read_s = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for img in images.values():
            reader.has_text(img)
        probe_s = (time.perf_counter() - t0) / n
        words = sum(len(w) for w in truth.values())
        found = sum(fold(w) in fold(read[p]) for p, ws in truth.items() for w in ws)
        invented = sum(1 for p, ws in truth.items() if not ws and read[p])
        out["accuracy"] = {"word_recall": round(found / words, 3), "words": words,
                           "scenes_with_invented_text": invented, "scenes": args.scenes}

        # Indexing cost: the same files, the same model, with and without reading.
        base = timed_index(root / "i0", root / "photos", args.model)
        with_text = timed_index(root / "i1", root / "photos", args.model, "--read-text")
        base2 = timed_index(root / "i2", root / "photos", args.model)  # again, for the noise
        base_s = min(base, base2)
        out["indexing"] = {"files": n, "model": args.model,
                           "extra_time_ratio": round((with_text - base_s) / base_s, 2),
                           "reader_per_photo_vs_index_per_photo": round(read_s / (base_s / n), 2),
                           "detector_pass_per_photo_vs_index_per_photo": round(probe_s / (base_s / n), 2),
                           "without_runs_s": [round(base, 2), round(base2, 2)], "with_s": round(with_text, 2)}

        # Fusion on one index of the bundled model: signs plus coloured shapes.
        rng = random.Random(3)
        scenes = {}
        for i in range(40):
            color, shape = SCENES[i % len(SCENES)]
            path = root / "photos" / f"shape-{i:03d}.png"
            make_sample(rng, 160, shape=shape, color=color).image.save(path)
            scenes[str(path)] = (color, shape)
        subprocess.run([EXE, "--index", str(root / "ib"), "index", str(root / "photos"), "--model", "bundled",
                        "--read-text", "-q"], check=True)
        with open_index(root / "ib") as index:
            def first(query, fused: bool):
                q = query if fused else index.embed_texts([query])[0]
                return [h.path for h in index.search(q, k=5)]
            sign_of = {w: [p for p, ws in truth.items() if ws == [w]] for w in SIGN_WORDS}
            queries = [w for w in SIGN_WORDS if sign_of.get(w)]
            p1 = {f: sum(first(w.lower(), f)[0] in sign_of[w] for w in queries) / len(queries) for f in (True, False)}
            p5 = {}
            for f in (True, False):
                p5[f] = sum(sum(scenes.get(p) == (c, s) for p in first(f"a {c} {s}", f)) / 5
                            for c, s in SCENES) / len(SCENES)
        out["fusion"] = {"word_queries": len(queries), "p_at_1_fused": round(p1[True], 3),
                         "p_at_1_clip_alone": round(p1[False], 3), "scene_queries": len(SCENES),
                         "p_at_5_fused": round(p5[True], 3), "p_at_5_clip_alone": round(p5[False], 3)}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
