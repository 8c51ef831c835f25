"""Search features on generated images: combined and image queries, filters inside the search,
relevance cuts, sorting, classification, tags, export (checked against numpy over stored vectors)."""

import json
import os
from datetime import datetime

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.filters import Filters, parse_date
from searchlib.indexer import index_folder
from searchlib.query import parse_query
from tests.conftest import TINY, make_exif


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """24 images: two folders, JPEG/PNG, sizes, cameras and capture dates spread over 2018-2023."""
    root = tmp_path_factory.mktemp("lib")
    rng = np.random.default_rng(5)
    for i in range(24):
        folder = root / ("holidays" if i % 3 == 0 else "home")
        folder.mkdir(exist_ok=True)
        size = (80, 60) if i % 4 else (160, 120)
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        if i % 2 == 0:
            exif = make_exif(taken=f"{2018 + i % 6}:0{1 + i % 9}:1{i % 10} 12:00:00",
                             make="Canon" if i % 4 == 0 else "Nikon", model=f"Model {i % 3}")
            img.save(folder / f"p{i:02d}.jpg", exif=exif)
        else:
            img.save(folder / f"p{i:02d}.png")
    index_dir = root / "index"
    index_folder(index_dir, root / "holidays", root / "home", model=TINY, device="cpu", workers=0)
    return root, index_dir


def _brute(index, vector, ids=None):
    _, all_ids, vecs = index.catalog.snapshot_vectors()
    keep = np.isin(all_ids, ids) if ids is not None else np.ones(len(all_ids), bool)
    sims = vecs[keep] @ vector
    order = np.argsort(-sims, kind="stable")
    return all_ids[keep][order].tolist(), sims[order]


def test_parse_query_splits_only_spaced_operators():
    terms = parse_query("beach + 2:sunset - people - t-shirt + black-and-white")
    assert [(t.value, t.weight) for t in terms] == [
        ("beach", 1.0), ("sunset", 2.0), ("people", -1.0), ("t-shirt", -1.0), ("black-and-white", 1.0)]


def test_combined_query_is_the_renormalized_weighted_sum(library):
    _, index_dir = library
    with open_index(index_dir) as index:
        a, b, c = index.embed_texts(["beach", "sunset", "people"])
        expected = 1.0 * a + 2.0 * b - 1.0 * c
        expected /= np.linalg.norm(expected)
        got = index.query_vector("beach + 2:sunset - people")
        np.testing.assert_allclose(got, expected, atol=1e-5)
        same = index.query_vector("beach", add=["2:sunset"], subtract=["people"])
        np.testing.assert_allclose(same, expected, atol=1e-5)
        hits = index.search("beach + 2:sunset - people", k=5)
        ids, scores = _brute(index, expected)
        assert [h.id for h in hits] == ids[:5]
        np.testing.assert_allclose([h.score for h in hits], scores[:5], atol=1e-5)


def test_indexed_image_query_finds_itself_first(library):
    root, index_dir = library
    probe = root / "home" / "p01.png"
    with open_index(index_dir) as index:
        hits = index.search(probe, k=3)
        # A string is always text in the library (the CLI decides what names a file): no
        # file-system lookup, so the path's words are embedded, not the image.
        as_text = index.search(str(probe), k=3)
        ids, _ = _brute(index, index.embed_texts([str(probe)])[0])
    assert hits[0].path == str(probe) and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.id for h in as_text] == ids[:3]


def test_unindexed_image_query_embeds_it(library, tmp_path):
    root, index_dir = library
    copy = tmp_path / "resized.png"
    Image.open(root / "home" / "p01.png").resize((79, 59)).save(copy)
    with open_index(index_dir) as index:
        hits = index.search("", add=[copy], k=1)
    assert hits[0].path == str(root / "home" / "p01.png")


@pytest.mark.parametrize("filters", [
    Filters(folder="HOLIDAYS"),
    Filters(after=parse_date("2020"), before=parse_date("2021", end=True)),
    Filters(camera="canon"),
    Filters(min_width=150),
    Filters(formats=("png",)),
    Filters(formats=("jpg",), camera="model 1"),
])
def test_filters_return_k_matching_hits_like_brute_force_over_the_subset(library, filters):
    root, index_dir = library
    if filters.folder:
        filters = Filters(folder=str(root / "holidays"))
    with open_index(index_dir) as index:
        allowed = index.catalog.filtered_ids(filters)
        rows = index.catalog.images(allowed.tolist())
        vector = index.query_vector("a red circle")
        hits = index.search("a red circle", k=4, filters=filters)
    assert len(allowed) >= 1 and len(hits) == min(4, len(allowed))
    ids, scores = _brute(index, vector, allowed)
    assert [h.id for h in hits] == ids[:4]
    for h in hits:  # every hit satisfies the filter, independently checked
        row, meta = rows[h.id].record, rows[h.id].record.metadata
        if filters.folder:
            assert row.path.startswith(str(root / "holidays") + os.sep)
        if filters.min_width:
            assert meta.width >= filters.min_width
        if filters.formats:
            assert meta.format == {"png": "PNG", "jpg": "JPEG"}[filters.formats[0]]
        if filters.camera:
            assert filters.camera.lower() in f"{meta.camera_make} {meta.camera_model}".lower()
        if filters.after:
            when = meta.taken_at or datetime.fromtimestamp(row.mtime_ns / 1e9)
            assert filters.after <= when <= filters.before


def test_filters_work_through_an_ivf_index(library, tmp_path):
    root, _ = library
    from tests.conftest import write_images

    folder = tmp_path / "many"
    write_images(folder, 180, size=(40, 30))
    index_folder(tmp_path / "ivf", folder, root / "holidays", model=TINY, device="cpu", workers=0,
                 index_type="IVF4,Flat")
    with open_index(tmp_path / "ivf") as index:
        assert index.vectors.index_type == "IVF4,Flat"
        flt = Filters(folder=str(root / "holidays"))
        hits = index.search("a cat", k=8, filters=flt)
        allowed = index.catalog.filtered_ids(flt)
        ids, _ = _brute(index, index.query_vector("a cat"), allowed)
    assert len(hits) == 8 and [h.id for h in hits] == ids[:8]


def test_relevance_cut_and_date_sort(library):
    _, index_dir = library
    with open_index(index_dir) as index:
        full = index.search("sunset", k=20)
        best = full[0].score
        cut = index.search("sunset", k=20, relative=0.05)
        assert [h.id for h in cut] == [h.id for h in full if h.score >= best - 0.05 * abs(best)]
        floor = index.search("sunset", k=20, min_score=full[5].score)
        assert [h.id for h in floor] == [h.id for h in full[:6]] or all(h.score >= full[5].score for h in floor)
        by_date = index.search("sunset", k=20, sort="date-asc")
        newest = index.search("sunset", k=20, sort="date")

    def dates(hits):
        return [h.metadata["taken_at"] or datetime.fromtimestamp(h.metadata["mtime"]).isoformat() for h in hits]

    assert dates(by_date) == sorted(dates(by_date)) and {h.id for h in by_date} == {h.id for h in full}
    assert dates(newest) == sorted(dates(newest), reverse=True) and {h.id for h in newest} == {h.id for h in full}


def test_classify_tag_and_tag_filter(library):
    root, index_dir = library
    runner = CliRunner()
    paths = [str(root / "home" / "p01.png"), str(root / "holidays" / "p00.jpg")]
    out = runner.invoke(main, ["--index", str(index_dir), "classify", *paths, "--labels", "cat, dog,car", "--json"])
    assert out.exit_code == 0, out.output
    results = json.loads(out.stdout)
    assert [r["path"] for r in results] == paths
    for r in results:
        assert set(r["scores"]) == {"cat", "dog", "car"} and abs(sum(r["scores"].values()) - 1) < 1e-4
        assert r["label"] == max(r["scores"], key=r["scores"].get)
    out = runner.invoke(main, ["--index", str(index_dir), "tag", "--labels", "cat,dog", "--json"])
    counts = json.loads(out.stdout)
    assert sum(counts.values()) == 24
    label = max(counts, key=counts.get)
    hits = json.loads(runner.invoke(main, ["--index", str(index_dir), "search", "x", "-k", "30", "--tag", label,
                                           "--json"]).stdout)
    assert len(hits) == counts[label] and all(h["tags"] == [label] for h in hits)
    bad = runner.invoke(main, ["--index", str(index_dir), "classify", paths[0], "--labels", "cat"])
    assert bad.exit_code == 1 and "at least two" in bad.stderr


def test_export_npy_and_parquet_are_aligned(library, tmp_path):
    _, index_dir = library
    runner = CliRunner()
    out = runner.invoke(main, ["--index", str(index_dir), "export", str(tmp_path / "v.npy"), "--json"])
    assert out.exit_code == 0, out.output
    vecs = np.load(tmp_path / "v.npy")
    side = json.loads((tmp_path / "v.ids.json").read_text())
    with open_index(index_dir) as index:
        _, ids, stored = index.catalog.snapshot_vectors()
        rows = index.catalog.images(ids.tolist())
    assert side["ids"] == ids.tolist() and side["paths"] == [rows[i].path for i in ids.tolist()]
    np.testing.assert_array_equal(vecs, stored)
    pq = pytest.importorskip("pyarrow.parquet")
    runner.invoke(main, ["--index", str(index_dir), "export", str(tmp_path / "v.parquet")])
    table = pq.read_table(tmp_path / "v.parquet").to_pydict()
    assert table["id"] == ids.tolist()
    np.testing.assert_allclose(np.asarray(table["vector"], dtype=np.float32), stored)


def test_export_bad_suffix_and_embed_text(library, tmp_path):
    _, index_dir = library
    runner = CliRunner()
    bad = runner.invoke(main, ["--index", str(index_dir), "export", str(tmp_path / "v.csv")])
    assert bad.exit_code == 1 and ".npy or .parquet" in bad.stderr
    out = json.loads(runner.invoke(main, ["--index", str(index_dir), "embed-text", "a cat", "a dog", "--json"]).stdout)
    assert [o["text"] for o in out] == ["a cat", "a dog"]
    with open_index(index_dir) as index:
        ref = index.embed_texts(["a cat"])[0]
    np.testing.assert_allclose(out[0]["vector"], ref, atol=1e-6)


def test_search_cli_options(library):
    root, index_dir = library
    runner = CliRunner()
    args = ["--index", str(index_dir), "search", "beach - people", "-k", "3", "--in", str(root / "home"),
            "--after", "2019", "--format", "jpeg", "--sort", "date", "--json"]
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    hits = json.loads(out.stdout)
    assert 1 <= len(hits) <= 3 and all("/home/" in h["path"] and h["format"] == "JPEG" for h in hits)
    img = runner.invoke(main, ["--index", str(index_dir), "search", "--image", str(root / "home" / "p01.png"),
                               "-k", "1", "--json"])
    assert json.loads(img.stdout)[0]["path"].endswith("p01.png")
    assert runner.invoke(main, ["--index", str(index_dir), "search"]).exit_code == 2
    bad_date = runner.invoke(main, ["--index", str(index_dir), "search", "x", "--after", "yesterday"])
    assert bad_date.exit_code == 1 and "cannot read date" in bad_date.stderr
