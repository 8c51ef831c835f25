"""The HTTP API against a real index built with the bundled model (FastAPI's TestClient)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from searchlib import Filters, open_index, parse_date
from searchlib.indexer import index_folder
from searchlib.models import BUNDLED_WEIGHTS
from searchlib.web import create_app

pytestmark = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """60 demo photos in two folders, indexed with the bundled model."""
    from searchlib.indexer.demo import make_demo_folder

    root = tmp_path_factory.mktemp("served")
    make_demo_folder(root / "photos", count=60)
    (root / "photos" / "trip").mkdir()
    for name in sorted(os.listdir(root / "photos"))[:20]:
        if name.endswith((".jpg", ".png")):
            os.rename(root / "photos" / name, root / "photos" / "trip" / name)
    index_folder(root / "index", root / "photos", model="bundled", device="cpu", workers=0)
    return root


@pytest.fixture(scope="module")
def client(library):
    with TestClient(create_app(library / "index", device="cpu"), base_url="http://localhost") as c:
        yield c


def test_text_search_matches_the_library(client, library):
    r = client.get("/api/v1/search", params={"q": "a red circle + a yellow sun - a blue sky", "k": 7})
    assert r.status_code == 200
    body = r.json()
    with open_index(library / "index") as index:
        expected = index.search("a red circle + a yellow sun - a blue sky", k=7)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    assert [h["rank"] for h in body["hits"]] == list(range(1, 8))
    hit = body["hits"][0]
    assert hit["thumbnail_url"] == f"/api/v1/images/{hit['id']}/thumbnail?size=256"
    assert {"score", "path", "date", "date_source", "width", "camera_make"} <= set(hit)
    assert body["next_offset"] == 7


@pytest.mark.parametrize("params,filters", [
    ({"in": "trip"}, None),
    ({"after": "2020", "before": "2021"}, Filters(after=parse_date("2020"), before=parse_date("2021", end=True))),
    ({"camera": "SYNTHETIC"}, Filters(camera="synthetic")),
    ({"format": "png"}, Filters(formats=("png",))),
    ({"min_width": 200, "sort": "date"}, Filters(min_width=200)),
])
def test_filters_and_paging_agree_with_the_library(client, library, params, filters):
    if filters is None:
        params = {"in": str(library / "photos" / "trip")}
        filters = Filters(folder=str(library / "photos" / "trip"))
    with open_index(library / "index") as index:
        expected = index.search("a green tree", k=6, offset=3, filters=filters, sort=params.get("sort", "score"))
    r = client.get("/api/v1/search", params={"q": "a green tree", "k": 6, "offset": 3, **params})
    assert r.status_code == 200, r.text
    got = r.json()["hits"]
    assert [h["id"] for h in got] == [h.id for h in expected] and got and got[0]["rank"] == 4


def test_relevance_is_reported_and_relevant_cuts(client, library):
    body = client.get("/api/v1/search", params={"q": "a red circle", "k": 10}).json()
    with open_index(library / "index") as index:
        expected = index.search("a red circle", k=10)
        kept = index.search("a red circle", k=10, relevant=True)
    assert [h["relevance"] for h in body["hits"]] == [h.relevance for h in expected]
    assert all(0.0 <= h["relevance"] <= 1.0 for h in body["hits"])
    cut = client.get("/api/v1/search", params={"q": "a red circle", "k": 10, "relevant": "true"}).json()
    assert [h["id"] for h in cut["hits"]] == [h.id for h in kept]
    assert cut["query"]["relevant"] is True
    nothing = client.get("/api/v1/search", params={"q": "zzzz qqqq", "relevant": "true"}).json()
    assert nothing["hits"] == [] and nothing["next_offset"] is None
    warned = client.get("/api/v1/search", params={"q": "красный круг"}).json()
    assert warned["warnings"] and "Cyrillic" in warned["warnings"][0]


def test_relative_and_min_score_cuts(client):
    full = client.get("/api/v1/search", params={"q": "a star", "k": 30}).json()["hits"]
    best = full[0]["score"]
    cut = client.get("/api/v1/search", params={"q": "a star", "k": 30, "relative": 0.05}).json()["hits"]
    assert [h["id"] for h in cut] == [h["id"] for h in full if h["score"] >= best - 0.05 * abs(best)]
    floor = client.get("/api/v1/search", params={"q": "a star", "k": 30, "min_score": full[4]["score"]}).json()
    assert all(h["score"] >= full[4]["score"] for h in floor["hits"])


def test_search_by_upload_by_id_and_combined(client, library):
    photo = sorted((library / "photos").glob("*.jpg"))[0]
    with open_index(library / "index") as index:
        own_id = index.catalog.id_of_path(str(photo))
    r = client.post("/api/v1/search", files={"image": ("x.jpg", photo.read_bytes(), "image/jpeg")}, params={"k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["id"] == own_id and r.json()["hits"][0]["score"] > 0.999
    # An image that is not indexed (resized) still finds its original first.
    buf = io.BytesIO()
    Image.open(photo).resize((200, 200)).save(buf, "PNG")
    r = client.post("/api/v1/search", files={"image": ("y.png", buf.getvalue(), "image/png")}, params={"k": 1})
    assert r.json()["hits"][0]["id"] == own_id
    similar = client.get(f"/api/v1/images/{own_id}/similar", params={"k": 4}).json()["hits"]
    assert similar[0]["id"] == own_id and len(similar) == 4
    combined = client.post("/api/v1/search", files={"image": ("x.jpg", photo.read_bytes(), "image/jpeg")},
                           data={"q": "a purple car"}, params={"k": 5})
    assert combined.status_code == 200 and len(combined.json()["hits"]) == 5


def test_image_metadata_file_and_thumbnails(client, library, tmp_path):
    first = client.get("/api/v1/search", params={"q": "a house", "k": 1}).json()["hits"][0]
    meta = client.get(f"/api/v1/images/{first['id']}").json()
    assert meta["path"] == first["path"] and meta["file_url"].endswith("/file")
    original = client.get(f"/api/v1/images/{first['id']}/file")
    assert original.status_code == 200 and original.content == Path(first["path"]).read_bytes()
    thumb = client.get(f"/api/v1/images/{first['id']}/thumbnail", params={"size": 128})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128 and "no-cache" in thumb.headers["cache-control"]
    etag = thumb.headers["etag"]
    assert client.get(f"/api/v1/images/{first['id']}/thumbnail", params={"size": 128},
                      headers={"If-None-Match": etag}).status_code == 304
    cached = list((library / "index" / "thumbnails" / "128").glob("*.jpg"))
    assert len(cached) >= 1
    # The file is replaced by another picture, or by a symlink to a picture outside the library: a
    # thumbnail is only made of the indexed bytes, so a 404 until it is indexed again, never a
    # picture of something else. Put back, the indexed thumbnail again.
    path = Path(first["path"])
    saved = path.read_bytes()
    secret = tmp_path / "private.jpg"
    Image.new("RGB", (300, 100), (10, 200, 10)).save(secret, "JPEG")
    try:
        path.write_bytes(secret.read_bytes())
        replaced = client.get(f"/api/v1/images/{first['id']}/thumbnail", params={"size": 512})
        assert replaced.status_code == 404 and "not the file indexed" in replaced.json()["error"], replaced.text
        path.unlink()
        path.symlink_to(secret)
        linked = client.get(f"/api/v1/images/{first['id']}/thumbnail", params={"size": 1024})
        assert linked.status_code == 404 and linked.headers["content-type"] == "application/json", linked.text
    finally:
        path.unlink()
        path.write_bytes(saved)
    back = client.get(f"/api/v1/images/{first['id']}/thumbnail", params={"size": 512})
    assert back.status_code == 200
    assert max(Image.open(io.BytesIO(back.content)).size) == min(512, max(Image.open(io.BytesIO(saved)).size))


def test_exif_orientation_applies_to_thumbnails(tmp_path):
    from searchlib.thumbnails import make_thumbnail
    from tests.conftest import make_exif

    buf = io.BytesIO()
    Image.new("RGB", (200, 100), (200, 0, 0)).save(buf, "JPEG", exif=make_exif(orientation=6))
    thumb = Image.open(io.BytesIO(make_thumbnail(buf.getvalue(), 128)))
    assert thumb.size == (64, 128)  # rotated: taller than wide


def test_info_classify_duplicates_tags(client):
    info = client.get("/api/v1/info").json()
    assert info["images"] == 60 and info["model"]["name"] == "bundled" and "generation" in info
    ids = [h["id"] for h in client.get("/api/v1/search", params={"q": "a red circle", "k": 2}).json()["hits"]]
    r = client.post("/api/v1/classify", data={"labels": "circle,star,house", "ids": ",".join(map(str, ids))})
    assert r.status_code == 200, r.text
    for row in r.json():
        assert set(row["scores"]) == {"circle", "star", "house"} and abs(sum(row["scores"].values()) - 1) < 1e-4
    assert client.get("/api/v1/duplicates", params={"threshold": 0.99}).status_code == 200
    assert client.get("/api/v1/tags").json() == {}
    assert client.get("/docs").status_code == 200 and "searchlib" in client.get("/openapi.json").text


@pytest.mark.parametrize("url,status", [
    ("/api/v1/search?q=", 400),
    ("/api/v1/search?q=%20%20", 400),
    ("/api/v1/search?q=x&k=0", 400),
    ("/api/v1/search?q=x&k=100000", 400),
    ("/api/v1/search?q=x&after=yesterday", 400),
    ("/api/v1/search?q=x&min_score=nan", 400),
    ("/api/v1/images/999999", 404),
    ("/api/v1/images/999999/file", 404),
    ("/api/v1/images/999999/thumbnail", 404),
    ("/api/v1/images/abc", 400),
    ("/api/v1/images/1/thumbnail?size=100000", 400),
    ("/api/v1/images/../../etc/passwd", 404),
    ("/api/v1/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file", 404),
    ("/static/../../../etc/passwd", 404),
    ("/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/api/v1/search?q=/etc/passwd&k=1", 200),
])
def test_bad_input_and_traversal_get_json_errors(client, url, status):
    r = client.get(url)
    assert r.status_code == status, (url, r.text)
    if status >= 400:
        assert set(r.json()) == {"error"} and r.json()["error"] and "Traceback" not in r.text
    assert "root:" not in r.text  # never the content of /etc/passwd


def test_a_query_naming_a_file_is_searched_as_text(client):
    by_path = client.get("/api/v1/search", params={"q": "/etc/hostname", "k": 3}).json()["hits"]
    assert all(h["score"] < 0.999 for h in by_path)  # not read as an image


def test_uploads_that_are_not_images_or_too_large(library, client):
    r = client.post("/api/v1/search", files={"image": ("x.jpg", b"not an image", "image/jpeg")})
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]
    with TestClient(create_app(library / "index", device="cpu", max_upload=1000),
                    base_url="http://localhost") as small:
        r = small.post("/api/v1/search", files={"image": ("x.jpg", os.urandom(5000), "image/jpeg")})
        assert r.status_code == 413 and "larger than" in r.json()["error"]
    from tests.helpers_cli import png_claiming

    r = client.post("/api/v1/search", files={"image": ("bomb.png", png_claiming(30000, 30000), "image/png")})
    assert r.status_code == 400 and "too large" in r.json()["error"]
    assert client.post("/api/v1/search").status_code == 400


def test_the_token_is_required_everywhere(library):
    with TestClient(create_app(library / "index", device="cpu", token="s3cret"), base_url="http://localhost") as c:
        for url in ("/", "/api/v1/info", "/api/v1/search?q=x", "/static/app.js", "/api/v1/images/1/file", "/docs"):
            r = c.get(url)
            assert r.status_code == 401 and "token" in r.json()["error"], url
        assert c.get("/api/v1/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/v1/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = c.get("/?token=s3cret")
        assert page.status_code == 200 and "searchlib_token" in page.headers.get("set-cookie", "")
        assert c.get("/api/v1/info").status_code == 200  # the cookie carries it now


def test_no_endpoint_writes(client, library):
    before = (library / "index" / "catalog.sqlite").stat().st_mtime_ns
    for route in client.app.routes:
        methods = getattr(route, "methods", set()) or set()
        assert not methods & {"PUT", "DELETE", "PATCH"}, route.path
    posts = {r.path for r in client.app.routes if "POST" in (getattr(r, "methods", set()) or set())}
    assert posts == {"/api/v1/search", "/api/v1/classify"}
    with open_index(library / "index") as index:
        assert index.info()["images"] == 60
    assert (library / "index" / "catalog.sqlite").stat().st_mtime_ns == before


def test_a_missing_index_gives_a_page_and_a_clear_api_answer(tmp_path):
    with TestClient(create_app(tmp_path / "none", device="cpu"), base_url="http://localhost") as c:
        assert c.get("/").status_code == 200
        info = c.get("/api/v1/info").json()
        assert info["empty"] and "searchlib index" in info["message"]
        r = c.get("/api/v1/search", params={"q": "x"})
        assert r.status_code == 404 and "searchlib index" in r.json()["error"]


def test_concurrent_text_queries_share_encoder_calls(library):
    from concurrent.futures import ThreadPoolExecutor

    with TestClient(create_app(library / "index", device="cpu"), base_url="http://localhost") as c:
        queries = [f"a red circle number {i}" for i in range(24)]
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda q: c.get("/api/v1/search", params={"q": q, "k": 3}), queries))
        assert all(r.status_code == 200 for r in results)
        index = c.app.state.holder.get()
        for batcher in (index.searcher.text_batcher, index.searcher.search_batcher):
            assert batcher.items == 24 and batcher.calls < 24
        with open_index(library / "index") as index:
            alone = index.search(queries[5], k=3)
        assert [h["id"] for h in results[5].json()["hits"]] == [h.id for h in alone]
    vectors = np.stack([r.json()["hits"][0]["score"] for r in results])
    assert np.isfinite(vectors).all()
