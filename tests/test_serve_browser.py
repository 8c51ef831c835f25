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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from searchlib import open_index
from searchlib.models import BUNDLED_WEIGHTS
from searchlib.thumbnails import SIZES

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
    assert "relevant=1" in page.url
    page.wait_for_selector("#closest-title:not([hidden])")  # what is shown now is labelled as not relevant
    assert "Nothing relevant" in page.inner_text("#empty")
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


def test_the_order_and_hiding_copies_keep_only_relevant_and_match_the_api(served, page):
    _, url = served
    page.goto(f"{url}/?q=a+red+circle&relevant=1")
    page.wait_for_selector(".tile")
    page.click("#filters summary")
    page.select_option("#f-sort", "date")
    page.check("#f-collapse")
    page.click("#apply-filters")
    page.wait_for_function("() => location.search.includes('sort=date')")
    assert "relevant=1" in page.url and "collapse=true" in page.url and page.is_checked("#relevant")
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/v1/search?q=a+red+circle&relevant=true&sort=date&collapse=true&k=60") as r:
        expected = [h["id"] for h in json.loads(r.read())["hits"]]
    assert expected
    page.wait_for_function(f"() => document.querySelectorAll('.tile').length === {len(expected)}")
    assert [t["id"] for t in _tiles(page)] == expected
    page.reload()  # the URL holds the order: a bookmark keeps it
    page.wait_for_selector(".tile")
    assert page.eval_on_selector("#f-sort", "e => e.value") == "date" and page.is_checked("#f-collapse")
    assert page.inner_text("#filters summary") == "Filters (2)"


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


# -- the page on a phone, the empty states, the viewer's moves, the accessibility audit -------------

PHONE = (390, 844)


@contextmanager
def opened(browser, width: int = 1280, height: int = 900, scale: float = 1, touch: bool = False,
           dark: bool = False) -> Iterator:
    """A page in a fresh browser context of this size, pixel density, input and colour scheme."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=scale,
                                  has_touch=touch, is_mobile=touch, color_scheme="dark" if dark else "light")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


def _names(page) -> list[str]:
    return page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.path.split('/').pop())")


def _box(page, selector: str) -> dict:
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect(); "
                                           "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; }")


def _wait_big(page) -> None:
    page.wait_for_function("() => { const b = document.querySelector('#big'); "
                           "return b.complete && b.naturalWidth > 0; }", timeout=20000)


OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll('body *')].filter(e => {
    const r = e.getBoundingClientRect();  // (a closed <details> keeps boxes for what it hides)
    return e.checkVisibility() && r.width > 0 && r.height > 0 && (r.right > width + 0.5 || r.left < -0.5);
  }).map(e => e.id || e.className || e.tagName);
  return {scroll: document.documentElement.scrollWidth, width, outside: out};
}"""

# Is the element inside the viewport, and is it what a finger there would touch?
REACHABLE = """(e) => {
  const r = e.getBoundingClientRect();
  const inside = r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth
    && r.bottom <= innerHeight;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return inside && hit !== null && (hit === e || e.contains(hit) || hit.contains(e));
}"""


def _no_overflow(page) -> None:
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= found["width"] and not found["outside"], found


@pytest.mark.parametrize("width", [390, 320])
def test_on_a_phone_nothing_overflows_and_every_control_is_in_reach(served, browser, width):
    _, url = served
    with opened(browser, width, 844, scale=3, touch=True) as page:
        page.goto(f"{url}/?q=a+red+circle")
        _wait_images(page)
        _no_overflow(page)
        tops = page.eval_on_selector_all(".tile", "els => els.map(e => Math.round(e.getBoundingClientRect().top))")
        columns = tops.count(tops[0])
        assert columns >= 2 if width < 390 else columns >= 3, tops[:8]
        for control in ("#q", "#search-form button[type=submit]", "#relevant", "#filters summary"):
            assert page.eval_on_selector(control, REACHABLE), control
        page.tap("#filters summary")
        for control in ("#f-in", "#f-after", "#f-before", "#f-camera", "#f-place", "#f-text", "#f-sort",
                        "#f-collapse", "#apply-filters", "#clear-filters"):
            assert page.eval_on_selector(control, REACHABLE), control
        _no_overflow(page)
        page.tap("#f-after")
        page.keyboard.type("2100")
        page.keyboard.press("Enter")  # the phone keyboard's "go" applies the filters
        page.wait_for_selector("#empty:not([hidden])")
        assert "after=2100" in page.url and page.inner_text("#filters summary") == "Filters (1)"
        assert page.is_hidden(".filter-row")  # the panel closed, the results are not covered
        _no_overflow(page)
        page.goto(f"{url}/?q={'y' * 300}&relevant=1&in=/{'z' * 200}")  # words too long for a line
        page.wait_for_selector("#empty:not([hidden])")
        _no_overflow(page)


def test_every_control_is_reached_by_tab_and_shows_where_the_focus_is(served, browser):
    _, url = served
    with opened(browser, *PHONE) as page:
        page.goto(f"{url}/?q=a+red+circle")
        page.wait_for_selector(".tile img")
        page.evaluate("document.querySelector('.skip').focus()")  # from the top of the page
        seen = {}
        for _ in range(10):
            page.keyboard.press("Tab")
            seen[page.evaluate("(() => { const e = document.activeElement; return e.id || e.tagName + '.' + "
                               "(e.className || e.type || ''); })()")] = page.evaluate(
                "(() => { const s = getComputedStyle(document.activeElement); "
                "return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) || s.boxShadow !== 'none'; })()")
    for control in ("q", "BUTTON.submit", "relevant", "SUMMARY.", "BUTTON.tile"):
        assert control in seen, seen
    assert all(seen.values()), seen  # every focused element draws a ring


@pytest.mark.parametrize("width, scale, expected", [(390, 1, {128}), (1280, 1, {256}), (390, 3, None)])
def test_thumbnails_are_fetched_at_the_size_the_tile_needs(served, browser, width, scale, expected):
    _, url = served
    with opened(browser, width, 844, scale, touch=width < 700) as page:
        asked = []
        page.on("request", lambda r: asked.append(r.url) if "/thumbnail" in r.url else None)
        page.goto(f"{url}/?q=a+blue+square")
        _wait_images(page)
        shown = page.eval_on_selector_all(".tile img", "imgs => imgs.filter(i => i.complete && i.currentSrc)"
                                          ".map(i => ({src: i.currentSrc, w: i.getBoundingClientRect().width}))")
    size_of = lambda u: int(re.search(r"[?&]size=(\d+)", u).group(1))  # noqa: E731
    for tile in shown:
        need, size = tile["w"] * scale, size_of(tile["src"])
        smaller = [s for s in SIZES if s < size]
        # Sharp enough (Chromium rounds between two candidates at their geometric mean, so at worst
        # 1/sqrt(2) of the pixels), and the next smaller size would not have done.
        assert size >= 0.7 * need and (not smaller or max(smaller) < need), (tile, scale)
    assert {size_of(u) for u in asked} == {size_of(t["src"]) for t in shown}  # nothing fetched twice over
    if expected:
        assert {size_of(u) for u in asked} == expected


def test_nothing_relevant_says_so_in_the_page_and_offers_the_closest_photos(served, page):
    root, url = served
    with open_index(root / "index") as index:
        assert index.search("zzzz qqqq", k=60, relevant=True) == []  # the premise
        closest = [h.id for h in index.search("zzzz qqqq", k=12)]
        everything = [h.id for h in index.search("zzzz qqqq", k=60)]
    page.goto(f"{url}/?q=zzzz+qqqq&relevant=1")
    page.wait_for_selector("#closest-title:not([hidden])")
    assert page.inner_text("#empty-title") == "Nothing relevant for “zzzz qqqq”"
    assert "other words" in page.inner_text("#empty-advice")
    assert [t["id"] for t in _tiles(page)] == closest
    page.click(".tile >> nth=2")  # the closest photos open like any others
    page.wait_for_selector("#viewer:not([hidden])")
    page.keyboard.press("Escape")
    page.click("#show-anyway")
    page.wait_for_function("n => document.querySelectorAll('.tile').length === n", arg=len(everything))
    assert [t["id"] for t in _tiles(page)] == everything
    assert page.is_hidden("#empty") and not page.is_checked("#relevant")
    assert "q=zzzz+qqqq" in page.url and "relevant" not in page.url
    page.go_back()  # the state before "show anyway" is one step back
    page.wait_for_selector("#closest-title:not([hidden])")


def test_filters_that_match_nothing_say_which_and_clear_in_one_click(served, page):
    _, url = served
    page.goto(f"{url}/?q=a+house&after=2100&camera=nikon")
    page.wait_for_selector("#empty:not([hidden])")
    text = page.inner_text("#empty")
    assert "match the filters" in text and "after 2100" in text and "camera nikon" in text
    assert page.query_selector(".tile") is None and page.is_hidden("#closest-title")
    assert page.inner_text("#filters summary") == "Filters (2)"
    page.click("#empty-clear-filters")
    page.wait_for_selector(".tile img")
    assert "after=" not in page.url and "camera=" not in page.url and page.is_hidden("#empty")


def test_the_viewer_moves_with_its_buttons_and_the_arrow_keys(served, page):
    _, url = served
    page.goto(f"{url}/?q=a+green+tree")
    page.wait_for_selector(".tile img")
    names, ids = _names(page), [t["id"] for t in _tiles(page)]
    page.click(".tile >> nth=0")
    page.wait_for_selector("#viewer:not([hidden])")

    def at(i: int) -> None:
        page.wait_for_function("n => document.querySelector('#viewer-title').textContent === n", arg=names[i])
        assert f"/images/{ids[i]}/thumbnail" in page.get_attribute("#big", "src")
        assert page.inner_text("#position").startswith(f"{i + 1} of {len(names)}")

    at(0)
    assert page.is_disabled("#prev") and page.is_enabled("#next")
    for _ in range(8):  # Tab stays in the dialog
        page.keyboard.press("Tab")
        assert page.evaluate("document.querySelector('#viewer').contains(document.activeElement)")
    page.click("#next")
    at(1)
    page.click("#next")
    at(2)
    page.click("#prev")
    at(1)
    page.keyboard.press("ArrowRight")
    at(2)
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    at(0)  # and no further
    for _ in range(len(names) + 2):
        page.keyboard.press("ArrowRight")
    at(len(names) - 1)
    assert page.is_disabled("#next")
    page.keyboard.press("Escape")  # back in the grid, on the photo the viewer showed last
    assert page.evaluate("document.activeElement.dataset.index") == str(len(names) - 1)


def test_back_closes_the_viewer_and_keeps_the_results(served, page):
    """On a phone Back is how a full-screen viewer is closed: it closes the viewer and keeps the
    page, its URL and its results; closing by the button leaves no entry behind, and "more like
    this" from the viewer is one step back from the search it came from."""
    _, url = served
    page.goto(f"{url}/?q=a+red+circle")
    page.wait_for_selector(".tile img")
    page.goto(f"{url}/?q=a+green+tree")
    page.wait_for_selector(".tile img")
    ids = [t["id"] for t in _tiles(page)]
    page.click(".tile >> nth=1")
    page.wait_for_selector("#viewer:not([hidden])")
    page.go_back()
    page.wait_for_selector("#viewer", state="hidden")
    assert page.url.endswith("/?q=a+green+tree") and [t["id"] for t in _tiles(page)] == ids
    page.click(".tile >> nth=0")
    page.wait_for_selector("#viewer:not([hidden])")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.evaluate("document.activeElement.dataset.index") == "0"
    page.wait_for_function("() => !(history.state && history.state.viewer)")
    page.click(".tile >> nth=2")
    page.wait_for_selector("#viewer:not([hidden])")
    page.click("#similar")
    page.wait_for_url(re.compile(r".*[?&]like=\d+"))
    page.wait_for_selector(".tile img")
    page.go_back()  # from "more like this" straight back to the query, not to a viewer
    page.wait_for_url(re.compile(r".*\?q=a\+green\+tree$"))
    page.wait_for_function("n => document.querySelectorAll('.tile').length === n", arg=len(ids))
    assert page.is_hidden("#viewer")
    page.go_back()  # and one more step is the search before
    page.wait_for_url(re.compile(r".*\?q=a\+red\+circle$"))


def test_on_a_phone_the_viewer_fills_the_screen_and_follows_swipes(served, browser):
    _, url = served
    with opened(browser, *PHONE, scale=2, touch=True) as page:
        page.goto(f"{url}/?q=a+green+tree")
        page.wait_for_selector(".tile img")
        names = _names(page)
        page.tap(".tile >> nth=0")
        page.wait_for_selector("#viewer:not([hidden])")
        _wait_big(page)
        assert _box(page, ".viewer-body") == {"left": 0, "top": 0, "right": PHONE[0], "bottom": PHONE[1]}
        photo, meta = _box(page, "#big"), _box(page, "#meta")
        assert photo["left"] == 0 and photo["right"] == PHONE[0] and meta["top"] >= photo["bottom"]
        _no_overflow(page)
        cdp = page.context.new_cdp_session(page)
        middle = (photo["top"] + photo["bottom"]) / 2

        def swipe(x0: float, y0: float, x1: float, y1: float) -> None:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
            for i in range(1, 7):
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                    {"x": x0 + (x1 - x0) * i / 6, "y": y0 + (y1 - y0) * i / 6}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

        def at(i: int) -> None:
            page.wait_for_function("n => document.querySelector('#viewer-title').textContent === n", arg=names[i])

        swipe(320, middle, 60, middle + 10)  # right to left: the next photo
        at(1)
        swipe(320, middle, 60, middle - 10)
        at(2)
        swipe(60, middle, 330, middle)  # left to right: back
        at(1)
        swipe(200, middle - 60, 215, middle + 60)  # mostly down: not a swipe sideways
        swipe(200, middle, 180, middle)  # too short
        page.wait_for_timeout(200)
        at(1)
        page.tap("#next")
        at(2)


def _axe(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in found]


@pytest.mark.parametrize("width, height", [(1280, 900), PHONE], ids=["desktop", "phone"])
def test_axe_finds_no_accessibility_violations(served, browser, width, height):
    _, url = served
    found = {}
    with opened(browser, width, height, touch=width < 700) as page:
        page.goto(f"{url}/?q=a+red+circle")
        _wait_images(page)
        found["grid"] = _axe(page)
        page.emulate_media(color_scheme="dark")  # the dark colours have their own contrasts
        found["grid, dark"] = _axe(page)
        page.emulate_media(color_scheme="light")
        page.click("#filters summary")
        found["filters"] = _axe(page)
        page.click("#filters summary")
        page.click(".tile >> nth=1")
        page.wait_for_selector("#viewer:not([hidden])")
        _wait_big(page)
        found["viewer"] = _axe(page)
        page.goto(f"{url}/?q=zzzz+qqqq&relevant=1&after=2000")
        page.wait_for_selector("#closest-title:not([hidden])")
        _wait_images(page)
        found["nothing relevant"] = _axe(page)
    assert found == {view: [] for view in found}


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


def test_the_page_works_under_its_content_security_policy(served, page):
    """The page loads only its own files (issue 24 #5): searching, the viewer and a dropped image all
    work with the server's CSP, and Chromium reports no CSP violation on the way."""
    root, url = served
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(f"{url}/?q=a+red+circle")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".tile img")
    _wait_images(page)
    page.click(".tile >> nth=0")
    page.wait_for_selector("#viewer:not([hidden])")
    page.wait_for_function("() => document.querySelector('#big').complete && "
                           "document.querySelector('#big').naturalWidth > 0", timeout=20000)
    page.keyboard.press("Escape")
    photo = sorted((root / "photos").glob("*.jpg"))[0]
    page.evaluate("""(bytes) => {
        const file = new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'});
        const dt = new DataTransfer();
        dt.items.add(file);
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", list(photo.read_bytes()))
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('dropped')", timeout=30000)
    # a script the page did not ship is refused: the policy is really enforced
    page.evaluate("() => { const s = document.createElement('script'); s.src = 'https://example.invalid/x.js';"
                  " document.head.appendChild(s); }")
    page.wait_for_timeout(300)
    assert [v for v in violations if "example.invalid" not in v] == []
    assert any("example.invalid" in v for v in violations)


#: File names a photo folder can really hold (anything but '/' and NUL), each an attack if the page
#: put it into markup or a URL as it is.
HOSTILE_NAMES = ['<img src=x onerror="window.__pwned=1">.jpg', '"><script>window.__pwned=2;<script>.png',
                 "it's <b>bold<b> & {{7*7}} ${7*7}.jpg", "\u202egnp.exe.png", "javascript:window.__pwned=3.jpg",
                 "100% #1 ?q=x&k=1 %2e%2e.png", "new\nline\ttab.jpg"]


def test_hostile_file_names_and_exif_stay_inert_in_the_grid_and_the_viewer(tmp_path, browser):
    """Names and camera EXIF written as markup are shown as text: in the tile (title, data), in the
    viewer's title and details; no element, handler or script of theirs reaches the page."""
    from PIL import Image

    from searchlib.indexer import index_folder
    from tests.conftest import make_exif

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = __import__("numpy").random.default_rng(4)
    for i, name in enumerate(HOSTILE_NAMES):
        img = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype="uint8")).resize((128, 96))
        if name.endswith(".jpg"):
            img.save(photos / name, exif=make_exif(make='<img src=x onerror="window.__pwned=9">',
                                                   model=f"<svg onload=window.__pwned={i}>"))
        else:
            img.save(photos / name)
    index_folder(tmp_path / "index", photos, model="bundled", device="cpu", workers=0)
    proc, url = start_server(tmp_path / "index")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{url}/?q=a+photo")
        page.wait_for_function(f"() => document.querySelectorAll('.tile').length === {len(HOSTILE_NAMES)}")
        paths = page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.path)")
        assert sorted(os.path.basename(p) for p in paths) == sorted(HOSTILE_NAMES)
        titles = page.eval_on_selector_all(".tile", "els => els.map(e => e.title.split('\\nscore')[0])")
        assert sorted(titles) == sorted(paths)
        _wait_images(page)
        for i in range(len(HOSTILE_NAMES)):
            page.click(f".tile >> nth={i}")
            page.wait_for_selector("#viewer:not([hidden])")
            shown = page.text_content("#viewer-title")
            assert shown == os.path.basename(paths[i])  # the name, character for character
            details = page.text_content("#meta")
            assert paths[i] in details
            if shown.endswith(".jpg"):
                assert '<img src=x onerror="window.__pwned=9">' in details  # the camera, as text
            page.keyboard.press("Escape")
        inert = page.evaluate("""() => ({
            pwned: window.__pwned,
            handlers: document.querySelectorAll('[onerror],[onload]').length,
            scripts: [...document.scripts].map(s => s.getAttribute('src')),
            injected: document.querySelectorAll('#grid b, #grid svg, #meta img, #meta svg, #meta b, #meta script, '
                                                + '#viewer-title *, #grid script').length})""")
        assert inert["pwned"] is None and inert["handlers"] == 0 and inert["injected"] == 0, inert
        assert all(src and src.startswith("/static/") for src in inert["scripts"]), inert
    finally:
        context.close()
        stop_server(proc)
    assert not errors, errors
