"""``searchlib serve`` while its PostgreSQL catalog goes away (issue 24 #2): a real server stopped
with ``-m immediate`` and started again. While it is down every catalog-backed endpoint answers 503
with ``Retry-After`` and a message that names no host; once it is back the same app answers 200 by
itself (no restart), with the same data."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from searchlib.web import create_app
from tests.conftest import TINY, write_images
from tests.test_db_faults import own_postgres  # noqa: F401 - the fixture: a server of this test's own


def test_catalog_down_is_503_with_retry_after_and_the_server_recovers_by_itself(own_postgres, tmp_path):  # noqa: F811
    from searchlib.indexer import index_folder

    url = own_postgres.new_database()
    write_images(tmp_path / "p", 6)
    index_folder(tmp_path / "cache", tmp_path / "p", model=TINY, device="cpu", workers=0, catalog=url)
    urls = ["/api/v1/images/1", "/api/v1/search?q=a+photo&k=3", "/api/v1/images/1/similar?k=3",
            "/api/v1/tags"]
    with TestClient(create_app(tmp_path / "cache", catalog=url, device="cpu"), base_url="http://localhost") as c:
        before = {u: c.get(u) for u in urls}
        assert all(r.status_code == 200 for r in before.values()), {u: r.text for u, r in before.items()}
        own_postgres.halt()
        try:
            for u in urls:
                r = c.get(u)
                assert r.status_code == 503, (u, r.status_code, r.text)
                assert int(r.headers["retry-after"]) > 0 and r.headers["content-type"] == "application/json"
                assert "127.0.0.1" not in r.text and str(own_postgres.port) not in r.text, r.text
        finally:
            own_postgres.resume()
        deadline = time.monotonic() + 30
        while c.get(urls[0]).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        after = {u: c.get(u) for u in urls}
        assert all(r.status_code == 200 for r in after.values()), {u: r.text for u, r in after.items()}
        assert after[urls[0]].json() == before[urls[0]].json()
        assert [h["id"] for h in after[urls[1]].json()["hits"]] == [h["id"] for h in before[urls[1]].json()["hits"]]


def test_catalog_unreachable_at_start_is_503_then_served_once_it_is_up(own_postgres, tmp_path):  # noqa: F811
    """The server starts while PostgreSQL is down (a boot order that went wrong): API requests get
    503 with Retry-After, the page itself is served, and once the database is up the same server
    answers 200 without a restart."""
    from searchlib.indexer import index_folder

    url = own_postgres.new_database()
    write_images(tmp_path / "p", 4)
    index_folder(tmp_path / "cache", tmp_path / "p", model=TINY, device="cpu", workers=0, catalog=url)
    own_postgres.halt()
    try:
        with TestClient(create_app(tmp_path / "cache", catalog=url, device="cpu"),
                        base_url="http://localhost") as c:
            assert c.get("/").status_code == 200
            for u in ("/api/v1/search?q=a+photo&k=3", "/api/v1/images/1", "/api/v1/info"):
                r = c.get(u)
                assert r.status_code == 503 and int(r.headers["retry-after"]) > 0, (u, r.status_code, r.text)
                assert "Traceback" not in r.text and str(own_postgres.port) not in r.text, r.text
            own_postgres.resume()
            deadline = time.monotonic() + 30
            while c.get("/api/v1/search?q=a+photo&k=3").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            r = c.get("/api/v1/search?q=a+photo&k=3")
            assert r.status_code == 200 and len(r.json()["hits"]) == 3, r.text
    finally:
        if not _is_up(own_postgres):
            own_postgres.resume()


def _is_up(server) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", server.port)) == 0
