"""Calibrated relevance: the figures against an independent computation, and the --relevant cut on a
generated folder whose answers are known (which images show a "red circle")."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.errors import QueryError
from searchlib.indexer import index_folder
from searchlib.models import BUNDLED_WEIGHTS
from searchlib.relevance import (
    BANK,
    BANK_FILE,
    MIN_BACKGROUND,
    SMALL_COLLECTION_CALIBRATION,
    Calibration,
    RelevanceScorer,
    load_bank,
)
from searchlib.synthetic import COLORS, SHAPES, make_sample

PRESENT = [("red", "circle"), ("blue", "star"), ("green", "tree"), ("yellow", "sun"), ("purple", "car"),
           ("orange", "flower"), ("black", "square"), ("pink", "house")]
ABSENT = [("red", "star"), ("blue", "circle"), ("green", "car"), ("yellow", "tree"), ("purple", "sun"),
          ("white", "triangle"), ("brown", "flower"), ("gray", "house")]


def test_features_match_an_independent_computation():
    rng = np.random.default_rng(0)

    def unit(n):
        v = rng.normal(size=(n, 16)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    background, bank, hits, query = unit(300), unit(len(BANK)), unit(5), unit(1)[0]
    bank[3] = query  # the bank holds the query itself ("a dog" asked of the bank's "a dog"): left out
    scores = hits @ query
    cal = Calibration(bias=-1.0, weights=(("z", 0.5), ("margin_n", 3.0)))
    scorer = RelevanceScorer(background, bank, cal)
    f = scorer.features(query, scores, hits)
    against = [float(np.dot(b, query)) for b in background]
    expected_z = [(s - np.mean(against)) / np.std(against) for s in scores]
    generic = [[float(np.dot(h, b)) for i, b in enumerate(bank) if i != 3] for h in hits]
    expected_margin = [s - max(g) for s, g in zip(scores, generic)]
    expected_margin_n = [m / np.std(g) for m, g in zip(expected_margin, generic)]
    np.testing.assert_allclose(f.z, expected_z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f.margin, expected_margin, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f.margin_n, expected_margin_n, rtol=1e-4, atol=1e-4)
    expected_p = [1 / (1 + np.exp(-(-1.0 + 0.5 * z + 3.0 * m))) for z, m in zip(expected_z, expected_margin_n)]
    np.testing.assert_allclose(scorer.relevance(query, scores, hits), expected_p, rtol=1e-4)
    # Too small a collection for a background: z is unknown and the margin-only calibration decides.
    small = RelevanceScorer(background[: MIN_BACKGROUND - 1], bank)
    assert np.isnan(small.features(query, scores, hits).z).all()
    (bias, ((name, weight),)) = SMALL_COLLECTION_CALIBRATION.bias, SMALL_COLLECTION_CALIBRATION.weights
    assert name == "margin_n"
    np.testing.assert_allclose(small.relevance(query, scores, hits),
                               [1 / (1 + np.exp(-(bias + weight * m))) for m in expected_margin_n], rtol=1e-4)


pytestmark_bundled = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")


@pytest.fixture(scope="module")
def shapes_index(tmp_path_factory):
    """96 generated photos: 12 each of 8 colour+shape pairs; 8 other pairs are absent."""
    root = tmp_path_factory.mktemp("relevance")
    rng = random.Random(5)
    (root / "photos").mkdir()
    truth = {}
    for i in range(96):
        color, shape = PRESENT[i % len(PRESENT)]
        sample = make_sample(rng, 128, shape=shape, color=color)
        path = root / "photos" / f"{i:03d}.png"
        sample.image.save(path)
        truth[str(path)] = (color, shape)
    index_folder(root / "index", root / "photos", model="bundled", device="cpu", workers=0)
    return root / "index", truth


@pytestmark_bundled
def test_relevant_keeps_matches_and_returns_nothing_when_nothing_matches(shapes_index):
    index_dir, truth = shapes_index
    with open_index(index_dir) as index:
        kept = correct = 0
        for color, shape in PRESENT:
            hits = index.search(f"a {color} {shape}", k=20, relevant=True)
            assert all(h.relevance >= 0.5 for h in hits)
            kept += len(hits)
            correct += sum(truth[h.path] == (color, shape) for h in hits)
        assert correct / max(1, kept) >= 0.8, (correct, kept)  # precision
        assert correct / (12 * len(PRESENT)) >= 0.5, correct  # recall
        empty = sum(not index.search(f"a {c} {s}", k=20, relevant=True) for c, s in ABSENT)
        empty += sum(not index.search(q, k=20, relevant=True) for q in ("zzzz qqqq", "a cat", "a bowl of soup"))
        assert empty >= 0.8 * (len(ABSENT) + 3), empty
        # Without the cut, the same queries still return their closest images, with relevance.
        hits = index.search("zzzz qqqq", k=5)
        assert len(hits) == 5 and all(0.0 <= h.relevance < 1.0 for h in hits)


@pytestmark_bundled
def test_relevance_is_for_text_queries(shapes_index):
    index_dir, truth = shapes_index
    with open_index(index_dir) as index:
        path = next(iter(truth))
        hits = index.search(index.vector_of(index.search("a red circle", k=1)[0].id), k=3)
        assert all(h.relevance is None for h in hits)
        with pytest.raises(QueryError, match="text queries only"):
            index.search("a red circle", add=[Path(path)], relevant=True)


@pytestmark_bundled
def test_the_bank_is_embedded_at_index_time_and_kept(shapes_index):
    index_dir, _ = shapes_index
    assert (index_dir / BANK_FILE).is_file()
    with open_index(index_dir) as index:
        saved = load_bank(index_dir, index.identity.to_dict())
        assert saved is not None and saved.shape == (len(BANK), index.identity.dim)
        np.testing.assert_allclose(saved, index.embed_texts(BANK), atol=1e-4)


@pytestmark_bundled
def test_cli_relevant_says_when_nothing_is_relevant(shapes_index):
    index_dir, _ = shapes_index
    runner = CliRunner()
    result = runner.invoke(main, ["--index", str(index_dir), "search", "zzzz qqqq", "--relevant"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "nothing relevant found" in result.stderr
    result = runner.invoke(main, ["--index", str(index_dir), "search", "zzzz qqqq", "--relevant", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = runner.invoke(main, ["--index", str(index_dir), "search", "a red circle", "-k", "3"])
    assert result.exit_code == 0 and result.stdout.splitlines()[0].split()[:3] == ["rank", "score", "relevance"]
    rows = json.loads(runner.invoke(main, ["--index", str(index_dir), "search", "a red circle", "--json",
                                           "--relevant"]).stdout)
    assert rows and all(r["relevance"] >= 0.5 for r in rows)
    photo = str(sorted((index_dir.parent / "photos").iterdir())[0])
    result = runner.invoke(main, ["--index", str(index_dir), "search", "--image", photo, "--relevant"])
    assert result.exit_code != 0 and "text queries only" in result.output


def test_the_fixture_pairs_exist_in_the_generator():
    # The fixture's pairs must exist in the generator (a renamed colour would make this test vacuous).
    for color, shape in PRESENT + ABSENT:
        assert color in COLORS and shape in SHAPES


def test_the_background_sample_is_kept_per_generation_and_read_by_new_processes(tmp_path, monkeypatch):
    """The first search keeps the sample; another process reads the file instead of the catalog and
    gets the same relevance; a changed collection draws it again; a damaged file is drawn again."""
    from searchlib.catalog.quick import QuickCatalog
    from searchlib.catalog.reads import CatalogReads
    from searchlib.relevance import BACKGROUND_FILE, BACKGROUND_SAMPLE, background_key, load_background
    from tests.conftest import TINY, write_images

    write_images(tmp_path / "p", 30, seed=3)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    directory = tmp_path / "i"
    with open_index(directory) as index:
        first = [(h.id, h.relevance) for h in index.search("a red circle", k=5)]
        generation = index.generation()
        key = background_key(generation, index.identity.to_dict())
        expected = index.catalog.sample_vectors(BACKGROUND_SAMPLE, seed=0, distinct=False)
    kept = load_background(directory, key)
    assert kept is not None and np.array_equal(kept, expected)

    drawn = []
    for cls in (QuickCatalog, CatalogReads):
        original = cls.sample_vectors

        def counting(self, *a, _original=original, **k):
            drawn.append(a)
            return _original(self, *a, **k)

        monkeypatch.setattr(cls, "sample_vectors", counting)
    with open_index(directory) as index:
        assert [(h.id, h.relevance) for h in index.search("a red circle", k=5)] == first
    assert drawn == []  # read from the file

    (directory / BACKGROUND_FILE).write_bytes(b"PK\x03\x04 damaged")
    with open_index(directory) as index:
        assert [(h.id, h.relevance) for h in index.search("a red circle", k=5)] == first
    assert len(drawn) == 1 and load_background(directory, key) is not None  # drawn again, kept again

    write_images(tmp_path / "p" / "more", 10, seed=4)
    index_folder(directory, tmp_path / "p", device="cpu", workers=0)
    with open_index(directory) as index:
        index.search("a red circle", k=5)
        assert index.generation() != generation
        new_key = background_key(index.generation(), index.identity.to_dict())
    assert len(drawn) == 2 and load_background(directory, key) is None
    assert load_background(directory, new_key) is not None
