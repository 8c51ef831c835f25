"""A saturated server (issue 24 #3): past ``--max-requests`` API requests at once, and for a decode
that cannot get room in the decode memory budget in time, the answer is 503 with ``Retry-After``
(JSON, as the contract declares), never a queue that grows without end; the page itself is still
served, and the server answers normally once the flood is over."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchlib import imaging
from searchlib.errors import DecodeBusyError
from tests.conftest import TINY, write_images
from tests.helpers_cli import EXE


def _jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize(size, Image.BILINEAR).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_a_decode_waits_only_as_long_as_its_context_allows():
    budget = imaging.DecodeBudget(100)
    holding, release = threading.Event(), threading.Event()

    def hold_all() -> None:
        with budget.hold(100):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_all)
    holder.start()
    holding.wait(10)
    token = imaging.decode_wait_limit.set(0.2)
    try:
        started = time.monotonic()
        with pytest.raises(DecodeBusyError, match="try again"):
            with budget.hold(50):
                pass
        assert 0.15 < time.monotonic() - started < 5
        assert budget.held == 100  # the refused share was never taken
    finally:
        imaging.decode_wait_limit.reset(token)
    waited: list[float] = []  # without a limit (the indexer's case) it waits for the room

    def wait_unbounded() -> None:
        t = time.monotonic()
        with budget.hold(50):
            waited.append(time.monotonic() - t)

    waiter = threading.Thread(target=wait_unbounded)
    waiter.start()
    time.sleep(0.5)
    assert not waited
    release.set()
    holder.join(10)
    waiter.join(10)
    assert waited and waited[0] >= 0.4 and budget.held == 0


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> Path:
    from searchlib.indexer import index_folder

    root = tmp_path_factory.mktemp("saturation")
    write_images(root / "photos", 6)
    index_folder(root / "index", root / "photos", model=TINY, device="cpu", workers=0)
    return root / "index"


def test_an_upload_that_cannot_get_decode_room_is_503_with_retry_after(tiny_index):
    """The request's wait limit reaches the worker thread that decodes: without it this upload would
    wait as long as the budget is held."""
    from fastapi.testclient import TestClient

    from searchlib.web import create_app

    answers: list = []
    with TestClient(create_app(tiny_index, device="cpu", decode_wait=0.3), base_url="http://localhost") as client:
        with imaging.decode_budget.hold(imaging.decode_budget.total):  # another request's huge decode
            worker = threading.Thread(target=lambda: answers.append(client.post(
                "/api/v1/search", files={"image": ("a.jpg", _jpeg((640, 480)), "image/jpeg")})))
            worker.start()
            worker.join(20)
            assert not worker.is_alive(), "the upload waited for the budget without end"
        r = answers[0]
        assert r.status_code == 503 and r.headers["retry-after"].isdigit(), r.text
        assert "try again" in r.json()["error"]
        after = client.post("/api/v1/search", files={"image": ("a.jpg", _jpeg((640, 480)), "image/jpeg")})
        assert after.status_code == 200  # room again: served


def test_a_flood_past_max_requests_is_told_to_come_back(tiny_index):
    """A real server with --max-requests 2 and 16 clients at once sending 12 MP uploads: the ones
    past the limit get 503 + Retry-After at once, the admitted ones 200; no other 5xx; the page is
    still served during the flood, and afterwards every request is answered again."""
    server = subprocess.Popen([EXE, "--index", str(tiny_index), "serve", "--port", "0", "--device", "cpu",
                               "--max-requests", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://\S+:\d+", line).group(0)
        big = _jpeg((4000, 3000))
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
        answers: list[tuple[int, str | None, bytes]] = []
        lock = threading.Lock()

        def send(path: str, data: bytes | None = None) -> tuple[int, str | None, bytes]:
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"} if data else {}
            try:
                with urllib.request.urlopen(urllib.request.Request(url + path, data=data, headers=headers),
                                            timeout=120) as r:
                    return r.status, r.headers.get("Retry-After"), r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers.get("Retry-After"), e.read()

        def client() -> None:
            for _ in range(3):
                got = send("/api/v1/search", body)
                with lock:
                    answers.append(got)

        clients = [threading.Thread(target=client) for _ in range(16)]
        for c in clients:
            c.start()
        page_during = send("/")
        for c in clients:
            c.join(300)
        statuses = sorted(a[0] for a in answers)
        assert len(answers) == 48 and set(statuses) <= {200, 503}, statuses
        refused = [a for a in answers if a[0] == 503]
        assert refused and statuses.count(200) >= 2, statuses
        for _, retry, data in refused:
            assert retry is not None and retry.isdigit()
            assert "busy" in json.loads(data)["error"]
        assert page_during[0] == 200
        assert send("/api/v1/search?q=red")[0] == 200 and send("/api/v1/search", body)[0] == 200
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err, err[-2000:]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
