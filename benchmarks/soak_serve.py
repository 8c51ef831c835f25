"""Soak ``searchlib serve`` (issue 24 #4): mixed traffic while an indexer changes the library and is
killed with ``kill -9`` again and again.

A real ``searchlib serve`` process answers ``--clients`` threads sending, at random: text queries
(some hostile: huge numbers, bad dates, control characters, 2 kB of text), image uploads (most
small JPEGs, some 12 MP ones, some garbage, some empty), thumbnails, "more like this", original
files (whole and by Range), /info. Meanwhile an indexer adds and removes photos and runs
``searchlib index``; every other run is ``kill -9``-ed mid-way. At the end one clean index run
must leave every photo on disk in the catalog exactly once.

It passes when: no 5xx other than a 503 carrying Retry-After; the server's RSS after warm-up stays
within ±10 % (the mean of the last fifth of the run against the mean of the fifth after warm-up;
warm-up is every client sending each kind of request once, a 12 MP upload included, and one index
run before the clock starts, then the run's first fifth);
its open file descriptors once the traffic stops are no more than after warm-up (+2 for slack);
nothing is lost. p50/p99 latency per kind of request is reported; the baseline measured in the
same run is the latency of ``/api/v1/info`` (no index work), so p99 is also given as a ratio to it.

    python benchmarks/soak_serve.py --seconds 300 --json benchmarks/results-soak-cpu.json
    python benchmarks/soak_serve.py --short        # ~30 s, what the test suite runs
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

EXE = str(Path(sys.executable).with_name("searchlib"))
MODEL = "searchlib-tiny/random"  # the tests' tiny model: the soak is about the server, not CLIP
WORDS = ["a dog", "red", "beach at sunset", "tree", "a photo", "car", "mountain snow", "cat on a sofa"]
HOSTILE_QUERIES = ["/api/v1/search?q=x&min_width=1999831178081553508026286080",
                   "/api/v1/images/18446744073709551616/similar", "/api/v1/duplicates?threshold=1e400",
                   "/api/v1/search?q=x&before=v", "/api/v1/search?q=%00%01%02", "/api/v1/search?q=" + "x" * 2100,
                   "/api/v1/search?q=x&k=0", "/api/v1/search?q=x&offset=-1", "/api/v1/search?q=x&after=2023-02-30",
                   "/api/v1/images/-5/file", "/api/v1/search?q=x&min_score=nan", "/../../etc/passwd",
                   "/api/v1/search?q=%E2%80%AE%3Cscript%3E", "/api/v1/images/1/thumbnail?size=99999"]


def photo(rng: np.random.Generator, size: tuple[int, int] = (320, 240), quality: int = 85) -> bytes:
    """A JPEG of smooth random colour (compresses like a photo, decodes like one)."""
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def multipart(fields: dict[str, str], name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 f'Content-Type: image/jpeg\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Soak:
    def __init__(self, root: Path, seconds: float, clients: int, photos: int, kills: int, seed: int):
        self.root, self.seconds, self.clients, self.kills = root, seconds, clients, kills
        self.photos_dir, self.index_dir = root / "photos", root / "index"
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.initial = photos
        self.records: list[tuple[str, int, float, float, bool]] = []  # kind, status, seconds, at, retry-after
        self.lock = threading.Lock()
        self.ids: list[int] = [1]
        self.stop = threading.Event()
        self.samples: list[tuple[float, int, int]] = []  # at, rss kB, fds
        self.killed = self.index_runs = self.added = self.removed = 0
        self.bad_inputs: set[str] = set()
        self.errors: list[str] = []

    # -- setup -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.photos_dir.mkdir(parents=True)
        for i in range(self.initial):
            (self.photos_dir / f"p{i:04d}.jpg").write_bytes(photo(self.rng))
        subprocess.run([EXE, "--index", str(self.index_dir), "index", str(self.photos_dir), "--model", MODEL,
                        "--workers", "0"], check=True, capture_output=True, timeout=600)
        self.server = subprocess.Popen([EXE, "--index", str(self.index_dir), "serve", "--port", "0", "--device",
                                        "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.server.stdout.readline()
        match = re.search(r"http://\S+:\d+", line)
        if not match:
            raise SystemExit(f"serve did not start: {line!r} {self.server.stderr.read()}")
        self.url = match.group(0)

    # -- the clients --------------------------------------------------------------------------------
    def call(self, kind: str, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes | None:
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        started = time.perf_counter()
        body, retry = None, False
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, retry = e.code, e.headers.get("Retry-After") is not None
            e.read()
            e.close()
        except (OSError, http.client.HTTPException) as e:
            status = 599  # no answer, or one cut short (IncompleteRead): counted as a server failure
            with self.lock:
                self.errors.append(f"{kind} {path[:80]}: {e}")
        with self.lock:
            self.records.append((kind, status, time.perf_counter() - started, time.monotonic(), retry))
        return body

    def client(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        big = photo(np.random.default_rng(n), (4000, 3000), 92)  # 12 MP
        small = photo(np.random.default_rng(n + 50))
        while not self.stop.is_set():
            pick = rng.random()
            image_id = rng.choice(self.ids)
            if pick < 0.30:
                body = self.call("search", f"/api/v1/search?q={rng.choice(WORDS).replace(' ', '+')}&k=20")
                if body:
                    hits = [h["id"] for h in json.loads(body)["hits"]]
                    if hits:
                        with self.lock:
                            self.ids = hits
            elif pick < 0.42:
                data = big if rng.random() < 0.15 else small
                kind = "upload"
                if rng.random() < 0.15:  # bad inputs: garbage, empty, truncated
                    data = rng.choice([os.urandom(5000), b"", small[: len(small) // 2]])
                    kind = "upload-bad"
                    self.bad_inputs.add("uploads: garbage, empty, truncated JPEG")
                body, ctype = multipart({"k": "10"}, "image", rng.choice(["a.jpg", "../../x.jpg", "é\u202e.jpg"]),
                                        data)
                self.call(kind, "/api/v1/search", body, {"Content-Type": ctype})
            elif pick < 0.62:
                self.call("thumbnail", f"/api/v1/images/{image_id}/thumbnail?size={rng.choice([128, 256, 512])}")
            elif pick < 0.74:
                self.call("similar", f"/api/v1/images/{image_id}/similar?k=10")
            elif pick < 0.86:
                headers = {"Range": "bytes=0-1023"} if rng.random() < 0.3 else {}
                self.call("file", f"/api/v1/images/{image_id}/file", headers=headers)
            elif pick < 0.94:
                self.call("info", "/api/v1/info")
            else:
                self.bad_inputs.add("hostile URLs: overflowing ids and sizes, NaN, bad dates, control "
                                    "characters, 2 kB queries, path traversal")
                self.call("hostile", rng.choice(HOSTILE_QUERIES))

    # -- the indexer, killed ------------------------------------------------------------------------
    def indexer(self) -> None:
        rng = random.Random(self.seed)
        pause = max(1.0, self.seconds / max(1, 2 * self.kills + 2))
        serial = self.initial
        missed = False
        late = 0  # runs after the clock stopped, to land kills that a slow machine had no time for
        while not self.stop.is_set() or (self.killed < self.kills and late < 2 * self.kills):
            late += self.stop.is_set()
            for _ in range(rng.randint(2, 6)):
                (self.photos_dir / f"p{serial:04d}.jpg").write_bytes(photo(self.rng))
                serial += 1
                self.added += 1
            present = sorted(self.photos_dir.glob("*.jpg"))
            for path in rng.sample(present, min(len(present) // 10, rng.randint(1, 3))):
                path.unlink()
                self.removed += 1
            proc = subprocess.Popen([EXE, "--index", str(self.index_dir), "index", str(self.photos_dir), "--model",
                                     MODEL, "--workers", "0", "--commit-seconds", "0.2"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.index_runs += 1
            # Every other run is killed; a run that ended before its kill passes the kill to the next
            # one, with a shorter fuse (CI once ran out of clock with one kill of two done).
            if self.killed < self.kills and (self.index_runs % 2 == 1 or missed or self.stop.is_set()):
                time.sleep(rng.uniform(0.3, 0.8 if missed else 2.0))
                missed = proc.poll() is not None
                if not missed:
                    os.kill(proc.pid, signal.SIGKILL)
                    self.killed += 1
            proc.communicate(timeout=600)
            if not self.stop.is_set():
                self.stop.wait(pause)

    # -- the server's footprint ------------------------------------------------------------------------
    def sampler(self) -> None:
        pid = self.server.pid
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), rss_kb(pid), len(os.listdir(f"/proc/{pid}/fd"))))
            self.stop.wait(0.5)

    def warm_up(self) -> None:
        """Every client at once sends each kind of request, a 12 MP upload included, before the clock
        starts: the server's first big decodes grow its heap by a step (found: +170 MB at the first
        12 MP upload), and that step is warm-up, not the growth the RSS check looks for."""
        def one(n: int) -> None:
            big = photo(np.random.default_rng(n), (4000, 3000), 92)
            for data in (big, photo(np.random.default_rng(n + 50))):
                body, ctype = multipart({"k": "10"}, "image", "warm.jpg", data)
                self.call("warm-up", "/api/v1/search", body, {"Content-Type": ctype})
            for path in ("/api/v1/search?q=warm&k=20", "/api/v1/info", f"/api/v1/images/{self.ids[0]}/similar",
                         f"/api/v1/images/{self.ids[0]}/file"):
                self.call("warm-up", path)
            for size in (128, 256, 512):
                self.call("warm-up", f"/api/v1/images/{self.ids[n % len(self.ids)]}/thumbnail?size={size}")

        threads = [threading.Thread(target=one, args=(n,)) for n in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        # One change to the library too: the first search after a commit replays the change log,
        # which loads FAISS and SQLAlchemy in the server (found: +170 MB once, flat after).
        (self.photos_dir / "warm-up.jpg").write_bytes(photo(self.rng))
        subprocess.run([EXE, "--index", str(self.index_dir), "index", str(self.photos_dir), "--model", MODEL,
                        "--workers", "0"], check=True, capture_output=True, timeout=600)
        one(0)
        self.records = [r for r in self.records if r[0] != "warm-up" or r[1] >= 500]  # a 5xx still counts

    def run(self) -> dict:
        self.prepare()
        self.warm_up()
        start = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(self.clients)]
        threads += [threading.Thread(target=self.indexer, daemon=True), threading.Thread(target=self.sampler,
                                                                                          daemon=True)]
        for t in threads:
            t.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in threads:
            t.join(timeout=900)
        time.sleep(2)  # traffic stopped: whatever is still open now is held, not in flight
        fds_idle = len(os.listdir(f"/proc/{self.server.pid}/fd"))
        rss_idle = rss_kb(self.server.pid)
        final = subprocess.run([EXE, "--index", str(self.index_dir), "index", str(self.photos_dir), "--model", MODEL,
                                "--workers", "0"], capture_output=True, text=True, timeout=900)
        listed = subprocess.run([EXE, "--index", str(self.index_dir), "list", "--paths"], capture_output=True,
                                text=True, timeout=300).stdout.split()
        on_disk = sorted(str(p) for p in self.photos_dir.glob("*.jpg"))
        self.server.send_signal(signal.SIGINT)
        try:
            _, server_err = self.server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            server_err = "(did not stop on SIGINT)"
        return self.report(start, fds_idle, rss_idle, final, listed, on_disk, server_err)

    def report(self, start, fds_idle, rss_idle, final, listed, on_disk, server_err) -> dict:
        duration = time.monotonic() - start
        warm = start + 0.2 * duration  # first fifth: imports, model load, caches filling
        after = [s for s in self.samples if s[0] >= warm]
        fifth = max(1, len(after) // 5)
        rss_warm = statistics.fmean(s[1] for s in after[:fifth])
        rss_end = statistics.fmean(s[1] for s in after[-fifth:])
        fds_warm = max(s[2] for s in after[:fifth])
        kinds: dict[str, dict] = {}
        for kind in sorted({r[0] for r in self.records}):
            rows = [r for r in self.records if r[0] == kind]
            lat = sorted(r[2] for r in rows)
            statuses: dict[str, int] = {}
            for r in rows:
                statuses[str(r[1])] = statuses.get(str(r[1]), 0) + 1
            kinds[kind] = {"requests": len(rows), "statuses": statuses,
                           "p50_ms": round(1000 * lat[len(lat) // 2], 1),
                           "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)}
        base = kinds.get("info", {}).get("p50_ms") or 1.0
        for v in kinds.values():
            v["p99_vs_info_p50"] = round(v["p99_ms"] / base, 1)
        bad_5xx = [r for r in self.records if r[1] >= 500 and not (r[1] == 503 and r[4])]
        lost = sorted(set(on_disk) - set(listed))
        extra = sorted(set(listed) - set(on_disk))
        checks = {
            "no 5xx but 503 with Retry-After": not bad_5xx,
            "RSS flat within 10% after warm-up": abs(rss_end / rss_warm - 1) <= 0.10,
            "no fd leak": fds_idle <= fds_warm + 2,
            "every photo exactly once after the kills": final.returncode == 0 and not lost and not extra
            and len(listed) == len(set(listed)),
            "server stopped cleanly, no traceback": "Traceback" not in server_err,
        }
        return {"passed": all(checks.values()), "checks": checks, "seconds": round(duration, 1),
                "clients": self.clients, "requests": len(self.records),
                "requests_per_s": round(len(self.records) / duration, 1), "by_kind": kinds,
                "bad_5xx": [f"{r[0]} {r[1]}" for r in bad_5xx[:10]], "connection_errors": self.errors[:10],
                "rss_mb": {"warm": round(rss_warm / 1024, 1), "end": round(rss_end / 1024, 1),
                           "idle": round(rss_idle / 1024, 1), "ratio_end_to_warm": round(rss_end / rss_warm, 3)},
                "fds": {"warm_max": fds_warm, "idle_end": fds_idle},
                "rss_curve_mb": [[round(t - start), round(r / 1024)] for t, r, _ in
                                 self.samples[::max(1, len(self.samples) // 20)]],
                "indexer": {"runs": self.index_runs, "killed_9": self.killed, "added": self.added,
                            "removed": self.removed, "final_run_rc": final.returncode,
                            "final_run_stderr": final.stderr.strip()[-300:]},
                "photos": {"on_disk": len(on_disk), "in_catalog": len(listed), "lost": lost[:5],
                           "stale": extra[:5]},
                "bad_inputs_tried": sorted(self.bad_inputs)}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--short", action="store_true", help="~30 s, 3 clients, 2 kills (the test suite's run)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.clients, args.kills, args.photos = 30, 3, 2, 20
    root = Path(tempfile.mkdtemp(prefix="searchlib-soak-"))
    try:
        report = Soak(root, args.seconds, args.clients, args.photos, args.kills, args.seed).run()
        report["command"] = "python benchmarks/soak_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])
        text = json.dumps(report, indent=1)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0 if report["passed"] else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
