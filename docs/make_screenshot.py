"""Make the README's pictures of the page: the demo photos, served and searched. docs/serve.png is
the page on a desktop; docs/serve-phone.png is the grid and the viewer on a phone, side by side.

    python docs/make_screenshot.py   # needs Debian's chromium (apt-get install chromium)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    import searchlib
    from searchlib.indexer.demo import make_demo_folder

    out = Path(__file__).resolve().parent / "serve.png"
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_folder(Path(tmp) / "photos", count=200)
        searchlib.index_folder(Path(tmp) / "index", Path(tmp) / "photos", model="bundled")
        exe = str(Path(sys.executable).with_name("searchlib"))
        server = subprocess.Popen([exe, "--index", f"{tmp}/index", "serve", "--port", "0"], stdout=subprocess.PIPE,
                                  text=True)
        url = re.search(r"http://\S+:\d+", server.stdout.readline()).group(0)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                page.goto(f"{url}/?q=a+red+circle")
                page.wait_for_function("() => { const imgs = [...document.querySelectorAll('.tile img')];"
                                       " return imgs.length >= 18 && imgs.slice(0, 18).every("
                                       "i => i.complete && i.naturalWidth > 0); }", timeout=60000)
                page.screenshot(path=str(out))
                phone_screens(browser, url, out.with_name("serve-phone.png"))
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    print(out)
    print(out.with_name("serve-phone.png"))


def phone_screens(browser, url: str, out: Path) -> None:
    """The grid and the viewer at a phone's 390 x 844, side by side in one picture."""
    import io

    from PIL import Image

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(f"{url}/?q=a+red+circle")
    page.wait_for_function("() => { const imgs = [...document.querySelectorAll('.tile img')];"
                           " return imgs.length >= 18 && imgs.slice(0, 18).every("
                           "i => i.complete && i.naturalWidth > 0); }", timeout=60000)
    page.evaluate("document.activeElement.blur()")
    grid = page.screenshot()
    page.tap(".tile >> nth=0")
    page.wait_for_function("() => { const b = document.querySelector('#big');"
                           " return b.complete && b.naturalWidth > 0; }", timeout=60000)
    viewer = page.screenshot()
    context.close()
    shots = [Image.open(io.BytesIO(png)) for png in (grid, viewer)]
    gap = 20
    sheet = Image.new("RGB", (sum(s.width for s in shots) + gap, max(s.height for s in shots)), "white")
    sheet.paste(shots[0], (0, 0))
    sheet.paste(shots[1], (shots[0].width + gap, 0))
    sheet.save(out, optimize=True)


if __name__ == "__main__":
    main()
