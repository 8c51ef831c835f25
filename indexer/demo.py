"""The offline demo: a generated photo folder, indexed with the bundled model, searched."""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from searchlib import open_index
from searchlib.query import Hit
from searchlib.synthetic import generate, make_sample

from .run import IndexReport, index_folder

DEMO_QUERIES = (
    "a red circle",
    "two blue stars",
    "两颗蓝色的星星",  # the same in Chinese: the bundled model reads both
    "a yellow sun",
    "a green tree",
    "a purple car",
    "three triangles",
)
#: (shape, color, count) the folder holds a few of for each query (and for the orange flower the
#: "Try next" lines suggest), so every query has answers among the random others.
_SEEDED = [("circle", "red", 1), ("star", "blue", 2), ("sun", "yellow", 1), ("tree", "green", 1),
           ("car", "purple", 1), ("triangle", None, 3), ("flower", "orange", 1)]


#: A query the demo folder has no answer for: ``relevant=True`` returns nothing for it.
DEMO_NOTHING = "a cat"


@dataclass
class DemoResult:
    """What the demo did: where, the index report, each query's hits with true captions, and what
    ``relevant=True`` kept for a query with no answer (:data:`DEMO_NOTHING`; nothing, ideally)."""

    folder: Path
    index_dir: Path
    report: IndexReport
    results: list[tuple[str, list[tuple[Hit, str]]]]
    nothing_query: str = DEMO_NOTHING
    nothing_kept: list[Hit] = field(default_factory=list)
    nothing_best: Hit | None = None


def make_demo_folder(folder: Path, count: int = 200, seed: int = 7) -> dict[str, str]:
    """Write ``count`` generated photos (JPEG, some PNG, with EXIF dates) and ``captions.csv``.

    Returns ``path -> true caption``. File names say nothing about content.
    """
    folder.mkdir(parents=True, exist_ok=True)
    existing = _read_captions(folder)
    if len(existing) == count and all(os.path.exists(p) for p in existing):
        return existing  # made before: leave the files (and their mtimes) alone
    rng = random.Random(seed)
    truth: dict[str, str] = {}
    start = datetime(2019, 1, 1)
    for i, sample in enumerate(_demo_samples(count, seed)):
        name = f"IMG_{i + 1:04d}." + ("png" if i % 10 == 9 else "jpg")
        path = folder / name
        if name.endswith(".jpg"):
            exif = Image.Exif()
            taken = start + timedelta(days=rng.randint(0, 5 * 365), seconds=rng.randint(0, 86399))
            exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
            exif[0x010F], exif[0x0110] = "searchlib", "synthetic camera"
            sample.image.save(path, "JPEG", quality=90, exif=exif)
        else:
            sample.image.save(path, "PNG")
        truth[str(path.resolve())] = sample.caption
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption"])
        for path, caption in truth.items():
            writer.writerow([os.path.basename(path), caption])
    return truth


def _demo_samples(count: int, seed: int) -> list:
    rng = random.Random(seed)
    seeded = [make_sample(rng, 256, shape=shape, color=color, count=n)
              for shape, color, n in _SEEDED for _ in range(3)][: count // 2]
    samples = seeded + generate(count - len(seeded), seed, size=256)
    random.Random(seed + 1).shuffle(samples)
    return samples


def _read_captions(folder: Path) -> dict[str, str]:
    try:
        with open(folder / "captions.csv", newline="", encoding="utf-8") as handle:
            return {str((folder / row["path"]).resolve()): row["caption"] for row in csv.DictReader(handle)}
    except (OSError, KeyError, csv.Error):
        return {}


def run_demo(directory: str | os.PathLike, count: int = 200, k: int = 3, device: str = "auto",
             queries: tuple[str, ...] = DEMO_QUERIES) -> DemoResult:
    """Generate the folder (once), index it with the bundled model, run the example queries."""
    directory = Path(directory).expanduser().resolve()
    folder, index_dir = directory / "photos", directory / "index"
    truth = make_demo_folder(folder, count)
    report = index_folder(index_dir, folder, model="bundled", device=device)
    results = []
    with open_index(index_dir, device=device) as index:
        for query in queries:
            hits = index.search(query, k=k)
            results.append((query, [(h, truth.get(h.path, "")) for h in hits]))
        kept = index.search(DEMO_NOTHING, k=k, relevant=True)
        best = index.search(DEMO_NOTHING, k=1)
    return DemoResult(folder, index_dir, report, results, DEMO_NOTHING, kept, best[0] if best else None)
