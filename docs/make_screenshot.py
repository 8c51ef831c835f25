"""Make docs/serve.png, the README's picture of the page: the demo photos, served and searched.

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
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    print(out)


if __name__ == "__main__":
    main()
