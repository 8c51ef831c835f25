"""The web page in real headless Chromium (Debian's package, driven by Playwright), against
``searchlib serve`` running as a real process; and the live index: an indexer adds photos while
the server answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from searchlib import open_index
from searchlib.models import BUNDLED_WEIGHTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
EXE = str(Path(sys.executable).with_name("searchlib"))

pytestmark = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")


def start_server(index_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([EXE, "--index", str(index_dir), "serve", "--port", "0", "--device", "cpu", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://\S+:\d+", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no URL from serve: {line!r} {proc.stderr.read()}")
    return proc, match.group(0)


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from searchlib.indexer import index_folder
    from searchlib.indexer.demo import make_demo_folder

    root = tmp_path_factory.mktemp("page")
    make_demo_folder(root / "photos", count=60)
    (root / "photos" / "trip").mkdir()
    for name in sorted(os.listdir(root / "photos"))[:25]:
        if name.endswith((".jpg", ".png")):
            os.rename(root / "photos" / name, root / "photos" / "trip" / name)
    index_folder(root / "index", root / "photos", model="bundled", device="cpu", workers=0)
    proc, url = start_server(root / "index")
    yield root, url
    stop_server(proc)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr.read()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        from tests.services import missing_service

        missing_service("Chromium is not installed here", "apt-get install -y chromium (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors


def _tiles(page) -> list[dict]:
    return page.eval_on_selector_all(".tile", "els => els.map(e => ({id: +e.dataset.id, path: e.dataset.path, "
                                              "w: e.querySelector('img').naturalWidth}))")


def _wait_images(page) -> None:
    page.wait_for_function("() => { const imgs = [...document.querySelectorAll('.tile img')].slice(0, 12);"
                           " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
                           timeout=20000)


def test_typing_a_query_shows_the_expected_thumbnails(served, page, tmp_path):
    root, url = served
    page.goto(url)
    page.fill("#q", "a red circle")
    page.keyboard.press("Enter")
    page.wait_for_selector(".tile img")
    _wait_images(page)
    with open_index(root / "index") as index:
        expected = [h.id for h in index.search("a red circle", k=12)]
    tiles = _tiles(page)
    assert [t["id"] for t in tiles[:12]] == expected
    assert all(t["w"] > 0 for t in tiles[:12])  # thumbnails actually loaded
    assert "q=a+red+circle" in page.url  # the URL reflects the query
    page.screenshot(path=str(tmp_path / "grid.png"))
    assert (tmp_path / "grid.png").stat().st_size > 10_000


def test_a_bookmarked_url_shows_its_results_and_more_like_this_ranks_the_image_first(served, page):
    root, url = served
    page.goto(f"{url}/?q=a+yellow+sun")
    page.wait_for_selector(".tile img")
    _wait_images(page)
    tiles = _tiles(page)
    chosen = tiles[3]
    page.click(f".tile[data-id='{chosen['id']}']")
    page.wait_for_selector("#viewer:not([hidden])")
    assert "EXIF" in page.inner_text("#meta") or "file time" in page.inner_text("#meta")
    page.click("#similar")
    page.wait_for_function(f"() => document.querySelector('.tile') && "
                           f"document.querySelector('.tile').dataset.id === '{chosen['id']}'")
    assert f"like={chosen['id']}" in page.url
    page.go_back()  # history works: back to the text results
    page.wait_for_function("() => document.querySelector('#q').value === 'a yellow sun'")


def test_only_relevant_hides_what_does_not_match_and_says_so(served, page):
    root, url = served
    page.goto(f"{url}/?q=zzzz+qqqq")
    page.wait_for_selector(".tile img")  # without the cut: the closest images anyway
    assert page.query_selector(".tile .rel") is not None  # each tile shows its relevance
    page.check("#relevant")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('nothing relevant')")
    assert page.query_selector(".tile") is None and "relevant=1" in page.url
    page.fill("#q", "a red circle")
    page.keyboard.press("Enter")
    page.wait_for_selector(".tile img")
    with open_index(root / "index") as index:
        expected = [h.id for h in index.search("a red circle", k=60, relevant=True)]
    assert expected and [t["id"] for t in _tiles(page)] == expected
    page.reload()  # the URL keeps the box ticked
    page.wait_for_selector(".tile img")
    assert page.is_checked("#relevant")


def test_a_query_the_model_cannot_read_shows_a_warning(served, page):
    _, url = served
    page.goto(f"{url}/?q=" + "красный круг")
    page.wait_for_selector(".tile img")
    assert "Cyrillic" in page.inner_text("#notice")


def test_keyboard_navigation(served, page):
    _, url = served
    page.goto(f"{url}/?q=a+green+tree")
    page.wait_for_selector(".tile img")
    page.keyboard.press("Escape")
    page.click("body", position={"x": 5, "y": 300})
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("document.activeElement.dataset.index")
    assert focused == "1"
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer:not([hidden])")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#viewer-title") == page.eval_on_selector_all(
        ".tile", "els => els[2].dataset.path.split('/').pop()")
    page.keyboard.press("Escape")
    assert page.is_hidden("#viewer")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"


def test_a_folder_filter(served, page):
    root, url = served
    folder = str(root / "photos" / "trip")
    page.goto(f"{url}/?q=a+house")
    page.wait_for_selector(".tile")
    page.click("#filters summary")
    page.fill("#f-in", folder)
    page.click("#apply-filters")
    prefix = json.dumps(folder + "/")
    page.wait_for_function(f"() => [...document.querySelectorAll('.tile')].length > 0 && "
                           f"[...document.querySelectorAll('.tile')].every(t => t.dataset.path.startsWith({prefix}))")
    assert "in=" in page.url
    paths = [t["path"] for t in _tiles(page)]
    assert paths and all(p.startswith(folder + "/") for p in paths)


def test_dropping_an_image_searches_by_example(served, page):
    root, url = served
    photo = sorted((root / "photos").glob("*.jpg"))[0]
    with open_index(root / "index") as index:
        own_id = index.catalog.id_of_path(str(photo))
    page.goto(url)
    data = list(photo.read_bytes())
    page.evaluate("""(bytes) => {
        const file = new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'});
        const dt = new DataTransfer();
        dt.items.add(file);
        document.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true}));
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", data)
    page.wait_for_selector(".tile")
    assert _tiles(page)[0]["id"] == own_id
    assert "like the dropped image" in page.inner_text("#status")


def test_an_empty_index_page_says_how_to_index(tmp_path, browser):
    proc, url = start_server(tmp_path / "nothing-yet")
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#notice:not([hidden])")
        assert "searchlib index" in page.inner_text("#notice")
        page.close()
    finally:
        stop_server(proc)


def test_the_page_needs_the_token_then_works(served, browser):
    root, _ = served
    proc, url = start_server(root / "index", "--token", "t0ken")
    try:
        page = browser.new_page()
        page.goto(url)
        assert "token" in page.inner_text("body")
        page.goto(f"{url}/?token=t0ken&q=a+red+circle")
        page.wait_for_selector(".tile img")
        _wait_images(page)  # thumbnails carry the token by cookie
        assert "token" not in page.url
        page.close()
    finally:
        stop_server(proc)


LIVE_INDEXER = """
import sys
from searchlib.indexer import index_folder
index_folder(sys.argv[1], sys.argv[2], device="cpu", workers=1, batch_size=4, commit_seconds=0.2)
"""


def test_live_index_new_photos_appear_without_restart_and_no_request_fails(tmp_path):
    from searchlib.indexer import index_folder
    from tests.conftest import write_images

    write_images(tmp_path / "photos", 4, size=(64, 48))
    index_folder(tmp_path / "index", tmp_path / "photos", model="bundled", device="cpu", workers=0)
    proc, url = start_server(tmp_path / "index")
    statuses, counts = [], []
    try:
        write_images(tmp_path / "photos" / "more", 120, seed=8, size=(160, 120))
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        indexer = subprocess.Popen([sys.executable, "-c", LIVE_INDEXER, str(tmp_path / "index"),
                                    str(tmp_path / "photos")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            for path in ("/api/v1/info", "/api/v1/search?q=a+photo&k=200"):
                try:
                    with urllib.request.urlopen(url + path, timeout=30) as r:
                        statuses.append(r.status)
                        body = json.loads(r.read())
                        if path.endswith("k=200"):
                            counts.append(len(body["hits"]))
                except urllib.error.HTTPError as e:
                    statuses.append(e.code)
            if indexer.poll() is not None and counts and counts[-1] == 124:
                break
            time.sleep(0.1)
        assert indexer.wait(60) == 0, indexer.stderr.read()
    finally:
        stop_server(proc)
    assert set(statuses) == {200}, statuses
    assert counts[0] < 124 and counts[-1] == 124  # the new photos appeared, without a restart
    assert len(set(counts)) >= 3  # seen while they were being added
