"""Words written in photos: read at index time (offline OCR), stored with a full-text index, fused
into text queries and used as a filter, on the CLI and in the library, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from searchlib import Filters, open_index
from searchlib.catalog import Catalog, ChangeSet
from searchlib.cli.main import main
from searchlib.ocr import TextReader, fold, words_of
from searchlib.records import ImageMetadata, ImageRecord
from searchlib.wordfusion import fuse, query_words
from tests.textimages import scene, screenshot, sign

pytest.importorskip("rapidocr_onnxruntime")

SIGNS = ["PHARMACY", "BAKERY", "MUSEUM", "CINEMA"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def worded(tmp_path_factory):
    """Signs, a screenshot and scenes without words, indexed with --read-text (bundled model)."""
    root = tmp_path_factory.mktemp("words")
    photos = root / "photos"
    photos.mkdir()
    for i, word in enumerate(SIGNS):
        sign(word, seed=i, rotate=(0, 4)[i % 2], blur=(0, 0.7)[i % 2]).save(photos / f"sign-{i}.jpg", quality=85)
    screenshot(["Flight confirmation", "Gate closes at", "Café Central"], seed=9).save(photos / "screen.png")
    for i in range(3):
        scene(seed=30 + i).save(photos / f"scene-{i}.jpg", quality=90)
    r = cli("--index", root / "index", "index", photos, "--model", "bundled", "--read-text", "--workers", "0",
            "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 8
    return root


def test_fold_and_words_are_case_and_accent_blind():
    assert fold("  Café\u00a0CENTRAL ") == "cafe central"
    assert words_of("Crème brûlée, a!") == ["creme", "brulee"]
    assert query_words(["a photo of the PHARMACY sign", "Bäckerei"]) == ["pharmacy", "backerei"]


def test_the_reader_reads_signs_and_finds_nothing_in_scenes():
    reader = TextReader()
    assert "BAKERY" in (reader.read(sign("BAKERY", seed=3, rotate=-5, blur=0.8)) or "").upper()
    assert reader.read(scene(seed=4)) is None
    assert reader.read(Image.new("RGB", (8, 8))) is None  # tiny and blank


def test_fusion_is_reciprocal_rank_and_keeps_clip_order_without_matches():
    assert fuse([5, 6, 7], []) == [5, 6, 7]
    assert fuse([5, 6, 7], [(7, 1.0)])[0] == 7  # a word match near the top of CLIP rises to first
    assert fuse([5, 6, 7], [(9, 1.0)])[:2] == [9, 5]  # a match CLIP did not list at all still ranks high
    assert fuse([1, 2], [(3, 1.0), (4, 0.5)]).index(3) < fuse([1, 2], [(3, 1.0), (4, 0.5)]).index(4)


def test_a_word_query_finds_its_sign_first_and_hits_carry_the_text(worded):
    for word in SIGNS:
        r = cli("--index", worded / "index", "search", word.lower(), "-k", "3", "--json")
        assert r.exit_code == 0, r.output
        hits = json.loads(r.stdout)
        assert word in hits[0]["text"].upper(), (word, hits[0])
    r = cli("--index", worded / "index", "search", "cafe central", "-k", "1", "--json")
    assert json.loads(r.stdout)[0]["path"].endswith("screen.png")


def test_text_filter_is_a_substring_match_ignoring_case_and_accents(worded):
    r = cli("--index", worded / "index", "search", "a shop", "--text", "pharm", "--paths")
    assert r.exit_code == 0 and r.stdout.strip().endswith("sign-0.jpg") and len(r.stdout.split()) == 1, r.output
    r = cli("--index", worded / "index", "search", "x", "--text", "CAFÉ", "--paths")
    assert r.stdout.strip().endswith("screen.png"), r.output
    r = cli("--index", worded / "index", "search", "x", "--text", "nowhere written")
    assert r.exit_code == 0 and "no matching images" in r.stderr


def test_queries_without_written_words_keep_the_clip_ranking(worded):
    with open_index(worded / "index") as index:
        for query in ("a blue sky over green grass", "round shapes"):
            fused = [h.id for h in index.search(query, k=8)]
            clip_only = [h.id for h in index.search(index.embed_texts([query])[0], k=8)]  # a vector: no words
            assert fused == clip_only


def test_reading_turned_on_later_reads_the_photos_indexed_before_and_a_move_keeps_words(worded, tmp_path):
    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy(worded / "photos" / "sign-2.jpg", photos / "museum.jpg")
    scene(seed=50).save(photos / "plain.jpg")
    assert cli("--index", tmp_path / "i", "index", photos, "--model", "bundled", "--workers", "0").exit_code == 0
    with open_index(tmp_path / "i") as index:
        assert all(im["text"] is None for im in index.images())  # never read
    r = cli("--index", tmp_path / "i", "index", photos, "--read-text", "--workers", "0", "--json")
    assert r.exit_code == 0, r.output
    with open_index(tmp_path / "i") as index:
        texts = {im["path"].rsplit("/", 1)[1]: im["text"] for im in index.images()}
    assert "MUSEUM" in texts["museum.jpg"].upper() and texts["plain.jpg"] == ""
    (photos / "museum.jpg").rename(photos / "moved.jpg")
    r = cli("--index", tmp_path / "i", "index", photos, "--json")
    assert json.loads(r.stdout)["moved"] == 1
    with open_index(tmp_path / "i") as index:
        assert [h.path for h in index.search("x", k=5, filters=Filters(text="museum"))] == [str(photos / "moved.jpg")]


def test_text_matching_on_every_catalog_backend(catalog_url):
    cat = Catalog(catalog_url, create=True)
    rows = [(ImageRecord(f"/p/{i}.jpg", 1, 1, f"h{i}", ImageMetadata(width=1, height=1, format="JPEG", text=t)),
             np.array([1.0, 0.0], dtype=np.float32))
            for i, t in enumerate(["PHARMACY\nopen 24h", "Café Central", None, "TAXI rank", ""])]
    ids = cat.apply(ChangeSet(added=rows)).added_ids
    assert cat.filtered_ids(Filters(text="pharm")).tolist() == [ids[0]]
    assert cat.filtered_ids(Filters(text="cafe CENTRAL")).tolist() == [ids[1]]
    assert cat.filtered_ids(Filters(text="ta")).tolist() == [ids[3]]  # two letters: a substring scan
    assert cat.filtered_ids(Filters(text="100%")).tolist() == []  # LIKE wildcards are literal
    assert cat.text_matches(["taxi", "pharmacy"]) == [(ids[0], 0.5), (ids[3], 0.5)]
    record = ImageRecord("/p/0.jpg", 1, 2, "h0", ImageMetadata(width=1, height=1, format="JPEG", text="BAKERY"))
    cat.apply(ChangeSet(updated=[(ids[0], record, np.array([1.0, 0.0], dtype=np.float32))], removed=[ids[3]]))
    assert cat.filtered_ids(Filters(text="pharm")).tolist() == []
    assert cat.filtered_ids(Filters(text="bakery")).tolist() == [ids[0]]
    assert cat.filtered_ids(Filters(text="taxi")).tolist() == []


def test_the_api_filters_by_text_and_hits_carry_it(worded):
    from fastapi.testclient import TestClient

    from searchlib.web import create_app

    with TestClient(create_app(worded / "index"), base_url="http://localhost") as client:
        r = client.get("/api/v1/search", params={"q": "a shop", "text": "bakery"})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 1 and "BAKERY" in hits[0]["text"].upper()
        first = client.get("/api/v1/search", params={"q": "museum", "k": 1}).json()["hits"][0]
        assert "MUSEUM" in first["text"].upper()
