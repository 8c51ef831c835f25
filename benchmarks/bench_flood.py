"""A flood of 12 MP uploads against ``searchlib serve`` (issue 24 #3): does memory stay bounded as
the clients multiply, and are the ones past the limit told to come back?

For each client count a fresh ``searchlib serve`` (tiny model: the server is measured, not CLIP)
takes ``--seconds`` of uploads, every client sending 12 MP JPEGs back to back. Reported per count:
answers by status (200 served, 503 with Retry-After refused; anything else fails the run), the
server's peak RSS (VmHWM) and its ratio to the smallest count's peak in the same run (the
baseline), p50/p99 latency of the served uploads, and whether every 503 carried Retry-After.

    python benchmarks/bench_flood.py --clients 4 16 64 --seconds 20 --json benchmarks/results-flood-cpu.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.soak_serve import EXE, MODEL, multipart, photo  # noqa: E402


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def flood(index: Path, clients: int, seconds: float, max_requests: int | None) -> dict:
    extra = ["--max-requests", str(max_requests)] if max_requests else []
    server = subprocess.Popen([EXE, "--index", str(index), "serve", "--port", "0", "--device", "cpu", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = re.search(r"http://\S+:\d+", server.stdout.readline()).group(0)
    body, ctype = multipart({"k": "10"}, "image", "big.jpg", photo(np.random.default_rng(1), (4000, 3000), 92))
    answers: list[tuple[int, float, bool]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(url + "/api/v1/search", data=body,
                                                                   headers={"Content-Type": ctype}), timeout=300) as r:
                    r.read()
                    status, retry = r.status, False
            except urllib.error.HTTPError as e:
                status, retry = e.code, e.headers.get("Retry-After") is not None
                e.read()
                if status == 503:
                    time.sleep(float(e.headers.get("Retry-After", 1)))  # as a polite client would
            except OSError:
                status, retry = 599, False
            with lock:
                answers.append((status, time.perf_counter() - started, retry))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    peak = status_kb(server.pid, "VmHWM:") / 1024
    server.terminate()
    _, err = server.communicate(timeout=60)
    served = sorted(a[1] for a in answers if a[0] == 200)
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a[0])] = statuses.get(str(a[0]), 0) + 1
    return {"clients": clients, "max_requests": max_requests or 32, "answers": statuses,
            "every_503_has_retry_after": all(a[2] for a in answers if a[0] == 503),
            "peak_rss_mb": round(peak, 1),
            "served_p50_ms": round(1000 * statistics.median(served), 1) if served else None,
            "served_p99_ms": round(1000 * served[min(len(served) - 1, int(0.99 * len(served)))], 1) if served else None,
            "traceback": "Traceback" in err}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-requests", type=int, help="serve's --max-requests (default: its own, 32)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="searchlib-flood-") as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            (root / "photos" / f"p{i}.jpg").write_bytes(photo(rng))
        subprocess.run([EXE, "--index", str(root / "index"), "index", str(root / "photos"), "--model", MODEL,
                        "--workers", "0"], check=True, capture_output=True)
        runs = [flood(root / "index", n, args.seconds, args.max_requests) for n in args.clients]
    base = runs[0]["peak_rss_mb"]
    for r in runs:
        r["peak_rss_vs_fewest_clients"] = round(r["peak_rss_mb"] / base, 2)
    ok = all(set(r["answers"]) <= {"200", "503"} and r["every_503_has_retry_after"] and not r["traceback"]
             for r in runs)
    report = {"passed": ok, "seconds_each": args.seconds, "runs": runs,
              "command": "python benchmarks/bench_flood.py " + " ".join(sys.argv[1:])}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
