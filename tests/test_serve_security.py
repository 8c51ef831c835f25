"""What ``searchlib serve`` guarantees a hostile client or a changed disk (issue 27 #2, #3, #4, #6,
#9, #11, #17): only the indexed bytes leave by /file, only allowed Host names are served, uploads
stop at the limit, validators let a changed photo show, HEAD and 405 behave, /docs is local, and
the API never reveals the catalog URL."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from searchlib import open_index
from searchlib.models import BUNDLED_WEIGHTS
from searchlib.web import create_app

pytestmark = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """12 demo photos indexed with the bundled model."""
    from searchlib.indexer import index_folder
    from searchlib.indexer.demo import make_demo_folder

    root = tmp_path_factory.mktemp("guarded")
    make_demo_folder(root / "photos", count=12)
    index_folder(root / "index", root / "photos", model="bundled", device="cpu", workers=0)
    return root


@pytest.fixture(scope="module")
def client(library):
    with TestClient(create_app(library / "index", device="cpu"), base_url="http://localhost") as c:
        yield c


@pytest.fixture()
def photo(library):
    """(id, path, bytes, content hash) of one indexed JPEG; whatever a test does to the file, it is
    put back afterwards."""
    with open_index(library / "index") as index:
        row = next(r for r in index.images() if r["path"].endswith(".jpg"))
    path = Path(row["path"])
    data, st = path.read_bytes(), path.stat()
    yield row["id"], path, data, row["content_hash"]
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap(path: Path, make) -> None:
    """Replace ``path`` by what ``make(new_path)`` creates, with one rename (as an attacker would)."""
    new = path.with_name(".swap")
    make(new)
    os.replace(new, path)


# -- #2: /file serves the indexed file or nothing ------------------------------------------------
def test_file_serves_the_indexed_bytes_with_a_content_hash_etag(client, photo):
    image_id, _, data, digest = photo
    r = client.get(f"/api/v1/images/{image_id}/file")
    assert r.status_code == 200 and r.content == data
    assert r.headers["etag"] == f'"{digest}"'
    assert r.headers["content-length"] == str(len(data))


def test_a_symlink_swapped_in_is_not_followed(client, photo, tmp_path):
    image_id, path, _, _ = photo
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET " * 50)
    _swap(path, lambda new: new.symlink_to(secret))
    r = client.get(f"/api/v1/images/{image_id}/file")
    assert r.status_code == 404 and b"TOP-SECRET" not in r.content
    assert "searchlib index" in r.json()["error"]


def test_a_forged_file_with_the_indexed_size_and_mtime_is_refused(client, photo, tmp_path):
    """An attacker who can write the photo folder pads a file to the indexed size and sets its mtime:
    size and mtime agree with the catalog, the bytes do not."""
    image_id, path, data, _ = photo
    st = path.stat()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOP-SECRET " + os.urandom(len(data) - 11))
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))
    for make in (lambda new: new.symlink_to(secret), lambda new: shutil.copy2(secret, new)):
        _swap(path, make)
        assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
        r = client.get(f"/api/v1/images/{image_id}/file")
        assert r.status_code == 404 and b"TOP-SECRET" not in r.content, r.headers


def test_a_fifo_or_a_directory_swapped_in_answers_at_once(client, photo):
    image_id, path, _, _ = photo
    _swap(path, os.mkfifo)
    answers: list = []
    fetch = threading.Thread(target=lambda: answers.append(client.get(f"/api/v1/images/{image_id}/file")))
    fetch.start()
    fetch.join(10)
    if fetch.is_alive():  # it blocked opening the FIFO: unblock it, then fail
        with open(path, "wb"):
            pass
        fetch.join(10)
        pytest.fail("/file blocked on a FIFO")
    assert answers[0].status_code == 404
    path.unlink()
    path.mkdir()
    try:
        assert client.get(f"/api/v1/images/{image_id}/file").status_code == 404
    finally:
        path.rmdir()


# -- #11: a rename during the request is a 404, never a 500 or a short body -----------------------
def test_file_under_a_rename_race_is_whole_or_404(client, photo):
    image_id, path, data, _ = photo
    stop = threading.Event()
    aside = path.with_name(".aside")

    def flip() -> None:
        while not stop.is_set():
            os.replace(path, aside)
            os.replace(aside, path)

    flipper = threading.Thread(target=flip)
    flipper.start()
    statuses = []
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            r = client.get(f"/api/v1/images/{image_id}/file")
            statuses.append(r.status_code)
            assert r.status_code in (200, 404), r.text
            if r.status_code == 200:
                assert r.content == data
            else:
                assert set(r.json()) == {"error"}
    finally:
        stop.set()
        flipper.join()
        if aside.exists():
            os.replace(aside, path)
    assert statuses.count(200) > 0


def test_range_requests_keep_working(client, photo):
    image_id, _, data, digest = photo
    r = client.get(f"/api/v1/images/{image_id}/file", headers={"Range": "bytes=10-99"})
    assert r.status_code == 206 and r.content == data[10:100]
    assert r.headers["content-range"] == f"bytes 10-99/{len(data)}"
    tail = client.get(f"/api/v1/images/{image_id}/file", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == data[-16:]
    stale = client.get(f"/api/v1/images/{image_id}/file", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    fresh = client.get(f"/api/v1/images/{image_id}/file", headers={"Range": "bytes=0-9", "If-Range": f'"{digest}"'})
    assert fresh.status_code == 206 and fresh.content == data[:10]


# -- #9: validators, so a changed photo shows --------------------------------------------------
def test_validators_on_files_and_thumbnails(client, photo):
    image_id, _, _, digest = photo
    for url in (f"/api/v1/images/{image_id}/file", f"/api/v1/images/{image_id}/thumbnail?size=128"):
        first = client.get(url)
        assert first.status_code == 200 and "no-cache" in first.headers["cache-control"]
        etag = first.headers["etag"]
        for given in (etag, f"W/{etag}", f'"x", {etag}', "*"):
            again = client.get(url, headers={"If-None-Match": given})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag, given
        assert client.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_a_photo_changed_in_place_gets_a_new_etag_once_indexed(tmp_path):
    from PIL import Image

    from searchlib.indexer import index_folder

    (tmp_path / "photos").mkdir()
    path = tmp_path / "photos" / "a.jpg"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(path, "JPEG")
    index_folder(tmp_path / "index", tmp_path / "photos", model="bundled", device="cpu", workers=0)
    with TestClient(create_app(tmp_path / "index", device="cpu"), base_url="http://localhost") as c:
        before = c.get("/api/v1/images/1/file")
        Image.new("RGB", (64, 48), (10, 10, 200)).save(path, "JPEG")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        changed = c.get("/api/v1/images/1/file", headers={"If-None-Match": before.headers["etag"]})
        assert changed.status_code == 404 and "searchlib index" in changed.json()["error"]
        index_folder(tmp_path / "index", tmp_path / "photos", model="bundled", device="cpu", workers=0)
        after = c.get("/api/v1/images/1/file", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and after.content == path.read_bytes()
        assert after.headers["etag"] != before.headers["etag"]


# -- #3: the Host header ------------------------------------------------------------------------
@pytest.mark.parametrize("host,status", [
    ("localhost", 200), ("localhost:8765", 200), ("127.0.0.1:8765", 200), ("127.1.2.3", 200),
    ("[::1]:8765", 200), ("app.localhost:8765", 200), ("LOCALHOST.", 200),
    ("attacker.example:8765", 421), ("rebind.attacker.example", 421), ("127.0.0.1.attacker.example", 421),
    ("192.168.1.5:8765", 421), ("[::ffff:7f00:1]", 421), ("", 400), ("local host", 400),
])
def test_without_a_token_only_loopback_host_names_are_served(client, host, status):
    r = client.get("/api/v1/search", params={"q": "red"}, headers={"Host": host})
    assert r.status_code == status, (host, r.text)
    if status != 200:
        assert set(r.json()) == {"error"} and "hits" not in r.text and "--allowed-host" in r.json()["error"]


def test_allowed_hosts_and_the_token(library):
    with TestClient(create_app(library / "index", device="cpu", allowed_hosts=["Photos.Home"]),
                    base_url="http://localhost") as c:
        assert c.get("/api/v1/info", headers={"Host": "photos.home:8765"}).status_code == 200
        assert c.get("/api/v1/info").status_code == 200  # loopback stays allowed
        assert c.get("/api/v1/info", headers={"Host": "other.home"}).status_code == 421
    with TestClient(create_app(library / "index", device="cpu", token="s3cret"), base_url="http://localhost") as c:
        # With a token, the token guards: a rebinding page cannot know it.
        assert c.get("/api/v1/info", headers={"Host": "nas.lan", "Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/v1/info", headers={"Host": "nas.lan"}).status_code == 401
    with TestClient(create_app(library / "index", device="cpu", token="s3cret", allowed_hosts=["nas.lan"]),
                    base_url="http://localhost") as c:
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/api/v1/info", headers={"Host": "nas.lan", **auth}).status_code == 200
        assert c.get("/api/v1/info", headers={"Host": "evil.lan", **auth}).status_code == 421


# -- #6: the upload limit, before the body is read ----------------------------------------------
def _asgi_post(app, headers: list[tuple[bytes, bytes]], chunks) -> tuple[int, dict, int]:
    """POST /api/v1/search straight into the ASGI app; the body comes from ``chunks`` (an
    iterator). Returns (status, JSON body, how many body bytes the app read)."""
    import anyio

    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/v1/search", "raw_path": b"/api/v1/search", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"localhost"), *headers], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8765), "state": {}}
    anyio.run(app, scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), read


def _huge_multipart(boundary: bytes):
    """A multipart body with a 64 MiB file (64 times the limit the tests set)."""
    yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
    for _ in range(1024):
        yield b"\xff" * 65536
    yield b"\r\n--" + boundary + b"--\r\n"


def test_an_upload_over_the_limit_is_refused_by_content_length_unread(library):
    app = create_app(library / "index", device="cpu", max_upload=1 << 20)
    boundary = b"b0undary"
    status, body, read = _asgi_post(app, [(b"content-type", b"multipart/form-data; boundary=" + boundary),
                                          (b"content-length", str(1500 << 20).encode())],
                                    _huge_multipart(boundary))
    assert status == 413 and "larger than 1 MiB" in body["error"] and read == 0


def test_a_chunked_upload_stops_being_read_at_the_limit(library):
    app = create_app(library / "index", device="cpu", max_upload=1 << 20)
    boundary = b"b0undary"
    status, body, read = _asgi_post(app, [(b"content-type", b"multipart/form-data; boundary=" + boundary),
                                          (b"transfer-encoding", b"chunked")], _huge_multipart(boundary))
    assert status == 413 and "larger than 1 MiB" in body["error"]
    assert read <= (1 << 20) + (1 << 20) + 65536  # the limit, the allowance for form fields, one chunk


# -- #17: HEAD, 405 with Allow, /docs without a CDN ----------------------------------------------
def test_head_works_wherever_get_does(client, photo):
    image_id, _, data, _ = photo
    for url in ("/", "/api/v1/info", f"/api/v1/images/{image_id}/file", f"/api/v1/images/{image_id}",
                f"/api/v1/images/{image_id}/thumbnail", "/static/app.js", "/docs", "/openapi.json",
                "/api/v1/search?q=red"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], url
    head = client.head(f"/api/v1/images/{image_id}/file")
    assert head.headers["content-length"] == str(len(data))
    assert client.head("/api/v1/images/999999/file").status_code == 404


@pytest.mark.parametrize("method,url,allow", [
    ("POST", "/api/v1/info", {"GET", "HEAD", "OPTIONS"}),
    ("PUT", "/api/v1/search", {"GET", "HEAD", "POST", "OPTIONS"}),
    ("DELETE", "/api/v1/images/1/file", {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/api/v1/classify", {"POST", "OPTIONS"}),
    ("POST", "/static/app.js", {"GET", "HEAD", "OPTIONS"}),
])
def test_405_carries_allow(client, method, url, allow):
    r = client.request(method, url)
    assert r.status_code == 405 and set(r.json()) == {"error"}
    assert {m.strip() for m in r.headers["allow"].split(",")} == allow
    assert client.options(url).status_code == 204  # OPTIONS, named in Allow, is answered (issue 24)


def test_docs_are_served_from_the_package(client):
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'<(?:script|link)[^>]* (?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/static/") for s in sources), sources
    for source in sources:
        assert client.get(source).status_code == 200, source
    assert "cdn" not in page.text.lower() and "default-src 'self'" in page.headers["content-security-policy"]


# -- #4: the API never reveals the catalog URL -----------------------------------------------------
def test_info_does_not_reveal_the_catalog(library, tmp_path):
    catalog = tmp_path / "elsewhere" / "my-catalog.sqlite"
    catalog.parent.mkdir()
    shutil.copy(library / "index" / "catalog.sqlite", catalog)
    shutil.copytree(library / "index", tmp_path / "index", ignore=shutil.ignore_patterns("catalog.sqlite*"))
    with TestClient(create_app(tmp_path / "index", catalog=f"sqlite:///{catalog}", device="cpu"),
                    base_url="http://localhost") as c:
        r = c.get("/api/v1/info")
        assert r.status_code == 200 and r.json()["images"] == 12, r.text
        assert "my-catalog" not in r.text and "catalog" not in r.json()


def test_errors_do_not_reveal_a_database_url(tmp_path):
    url = "postgresql://someone:pw1@127.0.0.1:1/photos?password=right-horse"
    with TestClient(create_app(tmp_path / "none", catalog=url, device="cpu"), base_url="http://localhost") as c:
        for path in ("/api/v1/info", "/api/v1/search?q=red", "/api/v1/images/1/file"):
            r = c.get(path)
            assert "right-horse" not in r.text and "pw1" not in r.text and "someone" not in r.text, (path, r.text)
            assert "127.0.0.1:1" not in r.text, (path, r.text)


# -- the same, over a real socket against a real `searchlib serve` ---------------------------------
def _raw(url: str, request: bytes, timeout: float = 10) -> bytes:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and b"413" in out.split(b"\r\n")[0]:
                break
        return out


def test_a_real_server_checks_host_head_and_upload_size(library):
    from tests.test_serve_browser import start_server, stop_server

    proc, url = start_server(library / "index", "--max-upload-mb", "1", "--allowed-host", "photos.home")
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/v1/info", method="HEAD"), timeout=30) as r:
            assert r.status == 200 and r.read() == b""
        foreign = urllib.request.Request(url + "/api/v1/info", headers={"Host": "attacker.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign, timeout=30)
        assert refused.value.code == 421
        named = urllib.request.Request(url + "/api/v1/info", headers={"Host": "photos.home"})
        with urllib.request.urlopen(named, timeout=30) as r:
            assert json.loads(r.read())["images"] == 12
        started = time.monotonic()
        answer = _raw(url, b"POST /api/v1/search HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
                      b"boundary=x\r\nContent-Length: 1572864000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 10
    finally:
        stop_server(proc)
