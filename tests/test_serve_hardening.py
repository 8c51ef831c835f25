"""Server hardening (issue 24 #5): security headers on every answer, CORS off unless ``--cors``,
OPTIONS answered, the token never in the server's logs, uploads only in a temporary directory that
is emptied. (The page under its CSP in Chromium: test_serve_browser.py.)"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from searchlib.web import create_app
from tests.conftest import TINY, write_images

EXE = str(Path(sys.executable).with_name("searchlib"))


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from searchlib.indexer import index_folder

    root = tmp_path_factory.mktemp("hardening")
    write_images(root / "photos", 4)
    index_folder(root / "index", root / "photos", model=TINY, device="cpu", workers=0)
    return root


@pytest.fixture(scope="module")
def client(library):
    with TestClient(create_app(library / "index", device="cpu"), base_url="http://localhost") as c:
        yield c


@pytest.mark.parametrize("method,url", [("GET", "/"), ("GET", "/api/v1/info"), ("GET", "/api/v1/images/1/file"),
                                        ("GET", "/api/v1/images/999/thumbnail"), ("DELETE", "/api/v1/search"),
                                        ("GET", "/static/app.js")])
def test_every_answer_carries_the_security_headers(client, method, url):
    r = client.request(method, url)
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "*" not in csp
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"


def test_a_refused_host_also_gets_them(client):
    r = client.get("/api/v1/info", headers={"Host": "evil.example"})
    assert r.status_code == 421 and r.headers["x-content-type-options"] == "nosniff"


def test_cors_is_off_by_default(client):
    r = client.get("/api/v1/info", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and not any(k.startswith("access-control") for k in r.headers)
    pre = client.options("/api/v1/search", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert not any(k.startswith("access-control") for k in pre.headers)


def test_cors_opens_for_the_given_origin_only(library):
    app = create_app(library / "index", device="cpu", cors_origins=["https://app.example"])
    with TestClient(app, base_url="http://localhost") as c:
        ok = c.options("/api/v1/search", headers={"Origin": "https://app.example", "Access-Control-Request-Method":
                                                  "POST", "Access-Control-Request-Headers": "authorization"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert c.get("/api/v1/info", headers={"Origin": "https://app.example"}).headers[
            "access-control-allow-origin"] == "https://app.example"
        other = c.get("/api/v1/info", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        refused = c.options("/api/v1/search", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_options_answers_the_methods_of_the_path(client):
    r = client.options("/api/v1/search")
    assert r.status_code == 204 and r.content == b""
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert set(client.options("/api/v1/images/1/file").headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    missing = client.options("/no/such/path")
    assert missing.status_code == 404 and missing.json()["error"]
    # a 405 names OPTIONS too, and the methods it names are the ones answered
    allow = client.delete("/api/v1/search").headers["allow"].split(", ")
    for method in allow:
        assert client.request(method, "/api/v1/search", params={"q": "x"}).status_code != 405


def test_uploads_stay_in_a_temporary_directory_that_is_emptied(library, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    before = {p: p.stat().st_mtime_ns for p in (library).rglob("*") if p.is_file()}
    cwd_before = set(os.listdir(os.getcwd()))
    buf = io.BytesIO()
    # large enough to spill out of memory (Starlette spools parts over 1 MiB to a temporary file)
    Image.effect_noise((1400, 1400), 80).convert("RGB").save(buf, "PNG")
    assert buf.tell() > 1 << 20
    with TestClient(create_app(library / "index", device="cpu"), base_url="http://localhost") as c:
        r = c.post("/api/v1/search", files={"image": ("../../../etc/evil name.png", buf.getvalue(), "image/png")},
                   data={"k": "2"})
        assert r.status_code == 200, r.text
        bad = c.post("/api/v1/search", files={"image": ("x.png", b"not an image" * 200_000, "image/png")})
        assert bad.status_code == 400
    assert os.listdir(spool) == []
    after = {p: p.stat().st_mtime_ns for p in (library).rglob("*") if p.is_file()}
    new = set(after) - set(before)
    assert not [p for p in new if "thumb" not in str(p) and "cache" not in str(p)], new
    assert set(os.listdir(os.getcwd())) == cwd_before


def test_the_token_never_appears_in_the_logs(library, tmp_path):
    token = "s3cret-Tok3n-xyz"
    proc = subprocess.Popen([EXE, "-vv", "--index", str(library / "index"), "serve", "--port", "0", "--device", "cpu",
                             "--token", token], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        base = re.search(r"http://\S+:\d+", line).group(0)

        def get(path: str, headers: dict | None = None) -> int:
            try:
                request = urllib.request.Request(base + path, headers=headers or {})
                with urllib.request.urlopen(request, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert get(f"/api/v1/info?token={token}") == 200
        assert get("/api/v1/info", {"Authorization": f"Bearer {token}"}) == 200
        assert get(f"/api/v1/info?token={token}x") == 401
        assert get(f"/api/v1/images/99999/file?token={token}") == 404
        assert get(f"/api/v1/search?token={token}&q=x&k=-1") == 400
        assert get(f"/api/v1/search?token={token}&q=x&min_width=99999999999999999999") == 400
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert token not in err, err
    assert token not in out  # the first line names the URL to open; the token is only in that line
    assert "Traceback" not in err


def test_cors_takes_only_origins(library):
    run = subprocess.run([EXE, "--index", str(library / "index"), "serve", "--port", "0", "--cors", "*"],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and "--cors" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert "scheme://host" in lines[-1]
