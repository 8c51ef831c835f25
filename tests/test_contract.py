"""The API's contract is true (issue 24 #1): schemathesis, the OpenAPI fuzzer, drives the ASGI app
with seeded, bounded examples of every operation (valid and invalid ones) and runs all its checks:
no 5xx, every status code, content type and header declared, every body matching its schema,
schema-valid requests accepted and schema-violating ones refused, 405s with Allow."""

from __future__ import annotations

from pathlib import Path

import pytest

# schemathesis is in the test extra: a missing one is an install error to see, never a quiet skip.
from tests.conftest import TINY, write_images
from tests.contract_fuzz import fuzz, load

#: Examples per operation and per generation mode: the fuzz takes about 40 s here (the issue: ~60 s in all).
EXAMPLES = 40


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    from searchlib.indexer import index_folder
    from searchlib.web import create_app

    root: Path = tmp_path_factory.mktemp("contract")  # the tiny model: the contract, not CLIP, is tested
    write_images(root / "photos", 6)
    index_folder(root / "index", root / "photos", model=TINY, device="cpu", workers=0)
    return load(create_app(root / "index", device="cpu"))


def test_every_answer_is_declared(api_schema):
    """Each operation, valid examples then invalid ones, seeded: every failure of any check is listed."""
    failures, sent = fuzz(api_schema, EXAMPLES)
    assert not failures, "\n\n".join(failures)
    assert sent > 100


@pytest.fixture(scope="module")
def client(api_schema):
    from fastapi.testclient import TestClient

    with TestClient(api_schema.app, base_url="http://localhost") as c:
        yield c


@pytest.mark.parametrize("url", [
    "/api/v1/search?q=x&min_width=1999831178081553508026286080",
    "/api/v1/duplicates?threshold=1e400",
    "/api/v1/search?q=x&min_score=nan",
    "/api/v1/search?q=x&relative=inf",
    "/api/v1/search?q=x&before=v",
    "/api/v1/search?q=x&after=2023-02-30",
])
def test_out_of_range_numbers_and_bad_dates_are_400s_the_schema_predicts(client, url):
    """The issue's overflows are malformed requests (400, JSON), and the schema says so: each value
    breaks a bound or pattern stated in /openapi.json."""
    r = client.get(url)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json", (r.status_code, r.text)
    assert r.json()["error"]


def test_the_document_declares_errors_binary_bodies_and_bounds(client):
    doc = client.get("/openapi.json").json()
    ops = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]
    for path, method, op in ops:
        # FastAPI's 422 (validation) is never answered; only a thumbnail that cannot be made is a 422
        assert "422" not in op["responses"] or path.endswith("/thumbnail"), (path, method)
        for status in ("400", "401", "404", "421", "500", "503") + (("422",) if path.endswith("/thumbnail") else ()):
            assert op["responses"][status]["content"]["application/json"]["schema"] == \
                {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)
        assert "Retry-After" in op["responses"]["503"]["headers"]
    file_ok = doc["paths"]["/api/v1/images/{image_id}/file"]["get"]["responses"]["200"]["content"]
    assert set(file_ok) == {"image/*", "application/octet-stream"}
    thumb_ok = doc["paths"]["/api/v1/images/{image_id}/thumbnail"]["get"]["responses"]["200"]["content"]
    assert set(thumb_ok) == {"image/jpeg"}
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/search"]["get"]["parameters"]}
    assert params["k"]["minimum"] == 1 and params["k"]["maximum"] >= 1
    assert params["min_width"]["maximum"] <= 10 ** 9 and "pattern" in params["before"]
    id_schema = doc["paths"]["/api/v1/images/{image_id}"]["get"]["parameters"][0]["schema"]
    assert id_schema["maximum"] == 2 ** 63 - 1


@pytest.mark.parametrize("url", ["/api/v1/images/18446744073709551616/similar", "/api/v1/images/-1",
                                 "/api/v1/images/18446744073709551616/file"])
def test_ids_out_of_the_schema_range_are_not_found(client, url):
    """An id the schema's range excludes is an image no one has: 404, as for any unknown id."""
    r = client.get(url)
    assert r.status_code == 404 and "no indexed image has id" in r.json()["error"], (r.status_code, r.text)
