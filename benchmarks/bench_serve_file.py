"""What checking /file against the catalog costs (issue 27 #2): ``searchlib serve``'s
``/api/v1/images/{id}/file`` against Starlette's ``StaticFiles`` serving the same files from the
same folder (what /file did before: open by path, no check), both real uvicorn processes, measured
in the same run.

* first view: each file fetched once (the server hashes it: the content-hash check);
* repeat view: the same files again (the check is remembered per inode: an fstat);
* Range: the first 64 KiB of each file (what a viewer that streams asks first);
* the image's metadata (``/api/v1/images/{id}``): the same catalog lookup with no file at all, so
  that file time = metadata time + transfer is the ideal.

Files are noise JPEGs of about ``--mb`` MB each (noise does not compress: the size is real), in the
page cache for both servers.

    python benchmarks/bench_serve_file.py --files 8 --mb 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchlib import open_index  # noqa: E402
from searchlib.indexer import index_folder  # noqa: E402

EXE = str(Path(sys.executable).with_name("searchlib"))
STATIC_SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
app = Starlette(routes=[Mount("/f", StaticFiles(directory=sys.argv[1]))])
config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
server = uvicorn.Server(config)
orig = server.startup
async def startup(sockets=None):
    await orig(sockets)
    print("http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1], flush=True)
server.startup = startup
server.run()
"""


def start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, re.search(r"http://\S+:\d+", proc.stdout.readline()).group(0)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)


def fetch_all(urls: list[str], headers: dict | None = None, reps: int = 1) -> float:
    """Seconds per request, median over the URLs (each ``reps`` times)."""
    times = []
    for url in urls * reps:
        t0 = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
            r.read()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--mb", type=float, default=5.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serve-file-"))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    side = int((args.mb * 1e6 / 3 / 0.55) ** 0.5)  # noise at quality 95: about 0.55 of raw RGB
    for i in range(args.files):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(photos / f"n{i}.jpg", quality=95)
    index_folder(root / "index", photos, model="bundled", device="cpu", workers=0)
    with open_index(root / "index") as index:
        rows = sorted(index.images(), key=lambda r: r["path"])
    sizes = [r["size"] for r in rows]
    ours, our_url = start([EXE, "--index", str(root / "index"), "serve", "--port", "0", "--device", "cpu"])
    static, static_url = start([sys.executable, "-c", STATIC_SERVER, str(photos)])
    try:
        ours_urls = [f"{our_url}/api/v1/images/{r['id']}/file" for r in rows]
        static_urls = [f"{static_url}/f/{os.path.basename(r['path'])}" for r in rows]
        fetch_all(static_urls)  # both read every file once before timing: the page cache is warm
        for path in photos.iterdir():
            path.read_bytes()
        out = {"files": args.files, "mean_mb": round(statistics.mean(sizes) / 1e6, 2)}
        out["static_first_ms"] = 1000 * fetch_all(static_urls)
        out["file_first_ms"] = 1000 * fetch_all(ours_urls)
        out["static_repeat_ms"] = 1000 * fetch_all(static_urls, reps=3)
        out["file_repeat_ms"] = 1000 * fetch_all(ours_urls, reps=3)
        span = {"Range": "bytes=0-65535"}
        out["static_range_ms"] = 1000 * fetch_all(static_urls, span, reps=3)
        out["file_range_ms"] = 1000 * fetch_all(ours_urls, span, reps=3)
        out["metadata_ms"] = 1000 * fetch_all([u.removesuffix("/file") for u in ours_urls], reps=3)
    finally:
        stop(ours)
        stop(static)
    for kind in ("first", "repeat", "range"):
        out[f"{kind}_ratio"] = out[f"file_{kind}_ms"] / out[f"static_{kind}_ms"]
    out = {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
