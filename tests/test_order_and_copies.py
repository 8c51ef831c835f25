"""Order and copies: relevant hits sorted by date and paged, near-duplicates folded into their best
hit (library, CLI and API side by side; checked against the stored vectors and dates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.indexer import index_folder
from searchlib.models import BUNDLED_WEIGHTS
from searchlib.query import DUPLICATE_THRESHOLD, Hit, collapse_duplicates

pytestmark = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")

#: A query with several relevant answers among the demo photos (ten "three triangles" scenes or so).
MANY = "three triangles"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """40 demo photos plus a resized, re-encoded copy of three of them, indexed with the bundled model."""
    from searchlib.indexer.demo import make_demo_folder

    root = tmp_path_factory.mktemp("order")
    make_demo_folder(root / "photos", count=40)
    for path in sorted((root / "photos").glob("*.jpg"))[:3]:
        with Image.open(path) as im:
            im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(
                root / "photos" / f"copy_{path.name}", quality=70, exif=im.getexif())
    index_folder(root / "index", root / "photos", model="bundled", device="cpu", workers=0)
    return root


def _date(hit) -> str:
    return (hit.metadata if isinstance(hit, Hit) else hit)["date"]


def _pages(fetch, k: int) -> list:
    out, offset = [], 0
    while True:
        page = fetch(offset, k)
        ranks = [h["rank"] if isinstance(h, dict) else h.rank for h in page]
        assert ranks == list(range(offset + 1, offset + 1 + len(page)))
        out += page
        if len(page) < k:
            return out
        offset += k


@pytest.mark.parametrize("sort,newest", [("date", True), ("date-asc", False)])
def test_relevant_hits_sorted_by_date_page_through_the_whole_relevant_set(library, sort, newest):
    with open_index(library / "index") as index:
        relevant = index.search(MANY, k=200, relevant=True)  # every relevant hit, best first
        assert len(relevant) >= 5 and all(h.relevance >= 0.5 for h in relevant)
        expected = sorted(relevant, key=lambda h: (_date(h), -h.score))
        if newest:
            expected = sorted(relevant, key=lambda h: _date(h), reverse=True)
        paged = _pages(lambda o, k: index.search(MANY, k=k, offset=o, relevant=True, sort=sort), 2)
    assert [_date(h) for h in paged] == [_date(h) for h in expected]
    assert sorted(h.id for h in paged) == sorted(h.id for h in relevant)  # each once, none lost


def test_relevant_pages_in_score_order_count_kept_hits(library):
    with open_index(library / "index") as index:
        relevant = index.search(MANY, k=200, relevant=True)
        paged = _pages(lambda o, k: index.search(MANY, k=k, offset=o, relevant=True), 3)
        nothing = index.search("a cat", k=5, relevant=True, sort="date")
    assert [h.id for h in paged] == [h.id for h in relevant] and nothing == []


def test_date_sort_without_a_cut_orders_each_page_of_best_hits(library):
    with open_index(library / "index") as index:
        best = index.search(MANY, k=8)
        second = index.search(MANY, k=4, offset=4, sort="date")
    assert {h.id for h in second} == {h.id for h in best[4:]}
    assert [_date(h) for h in second] == sorted((_date(h) for h in best[4:]), reverse=True)


def test_collapse_folds_copies_into_their_best_hit(library):
    with open_index(library / "index") as index:
        _, ids, vectors = index.catalog.snapshot_vectors()
        vec = dict(zip(ids.tolist(), vectors))
        full = index.search("a red circle", k=len(ids))
        collapsed = _pages(lambda o, k: index.search("a red circle", k=k, offset=o, collapse=True), 7)
    # Independently: walk the ranking, fold a hit into the first kept one it is a copy of.
    keepers: dict[int, list[int]] = {}
    for h in full:
        owner = next((i for i in keepers if float(vec[i] @ vec[h.id]) > DUPLICATE_THRESHOLD), None)
        if owner is None:
            keepers[h.id] = []
        else:
            keepers[owner].append(h.id)
    assert [(h.id, list(h.duplicates)) for h in collapsed] == list(keepers.items())
    folded = [i for dups in keepers.values() for i in dups]
    assert len(folded) >= 3  # the three copies (at least) were found
    assert len(collapsed) + len(folded) == len(full)


def test_collapse_duplicates_pure():
    hits = [Hit(i + 1, 10 + i, f"/p{i}", 1.0 - i / 10) for i in range(4)]
    v = np.eye(3, dtype=np.float32)
    vectors = np.stack([v[0], v[1], v[0], (v[1] + 0.01 * v[2]) / np.linalg.norm(v[1] + 0.01 * v[2])])
    out = collapse_duplicates(hits, vectors, 0.95)
    assert [(h.id, h.duplicates) for h in out] == [(10, (12,)), (11, (13,))]
    assert collapse_duplicates(hits, vectors, 0.99999)[1].duplicates == ()
    assert out[0].to_dict()["duplicates"] == [12] and "duplicates" not in hits[0].to_dict()


def test_cli_sort_relevant_and_collapse(library):
    runner = CliRunner()
    base = ["--index", str(library / "index"), "search", MANY, "--relevant", "--sort", "date", "--json"]
    whole = json.loads(runner.invoke(main, base + ["-k", "50"]).stdout)
    page2 = runner.invoke(main, base + ["-k", "2", "--offset", "2"])
    assert page2.exit_code == 0, page2.output
    assert json.loads(page2.stdout) == whole[2:4]
    dates = [h["date"] for h in whole]
    assert len(whole) >= 5 and dates == sorted(dates, reverse=True)
    out = runner.invoke(main, ["--index", str(library / "index"), "search", "a red circle", "-k", "40",
                               "--collapse-duplicates", "--json"])
    hits = json.loads(out.stdout)
    assert all("duplicates" in h for h in hits) and sum(len(h["duplicates"]) for h in hits) >= 3
    shown = {h["id"] for h in hits}
    assert not shown & {i for h in hits for i in h["duplicates"]}
    table = runner.invoke(main, ["--index", str(library / "index"), "search", "a red circle", "-k", "40",
                                 "--collapse-duplicates"])
    assert table.exit_code == 0 and "copies)" in table.stdout
    bad = runner.invoke(main, ["--index", str(library / "index"), "search", "x", "--sort", "newest"])
    assert bad.exit_code == 2


def test_api_sort_and_collapse_match_the_library(library):
    with open_index(library / "index") as index:
        expected = index.search(MANY, k=3, offset=2, relevant=True, sort="date-asc")
        collapsed = index.search("a red circle", k=10, collapse=True)
    with TestClient(__import__("searchlib.web", fromlist=["create_app"]).create_app(
            library / "index", device="cpu"), base_url="http://localhost") as client:
        r = client.get("/api/v1/search", params={"q": MANY, "k": 3, "offset": 2, "relevant": "true",
                                                 "sort": "date-asc"})
        assert r.status_code == 200, r.text
        assert [h["id"] for h in r.json()["hits"]] == [h.id for h in expected]
        c = client.get("/api/v1/search", params={"q": "a red circle", "k": 10, "collapse": "true"}).json()
        assert [(h["id"], h["duplicates"]) for h in c["hits"]] == [(h.id, list(h.duplicates)) for h in collapsed]
        assert client.get("/api/v1/search", params={"q": "x", "sort": "newest"}).status_code in (400, 422)
