"""``searchlib watch``: event sources compared, latency, burst rate against ``index``, idle cost.

* sources: on a synthetic tree of ``--tree-files`` empty files (100 per folder), each event source
  in a process of its own: time until it reports a probe file, memory it adds, how many of 2,000
  new files it reports and how fast (p50). searchlib's own inotify (``ChangeFeed``), watchdog and
  watchfiles;
* latency: from the last write of a photo (copied in, one at a time) to its row in the catalog,
  p50 and p95, at the ``--debounce`` stated;
* burst: ``--burst`` photos moved (one rename) and copied (file by file) into a watched folder,
  until the last is committed, against ``searchlib index`` of the same photos, run before and
  after (both sides load the model; both indexes already hold one photo);
* idle: CPU seconds over ``--idle`` seconds and RSS of a watcher over the synthetic tree, with
  events and with ``--poll``.

The model is the tiny random-init test model: the watcher's own costs are what is measured here,
the model's are bench_index's.

    nice python benchmarks/bench_watch.py --json benchmarks/results-watch-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import TINY, write_images  # noqa: E402

EXE = str(Path(sys.executable).with_name("searchlib"))


def make_tree(root: Path, files: int, per_folder: int = 100) -> None:
    """Empty non-image files, ``per_folder`` to a folder, folders two levels deep."""
    for n in range(files // per_folder):
        folder = root / f"d{n // 32:03d}" / f"e{n % 32:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            (folder / f"f{i:03d}.dat").touch()


def rss_kb(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one event source, in a child process (--source NAME --tree DIR) --------------------------------

def run_source(name: str, tree: Path) -> dict:
    seen: dict[str, float] = {}
    lock = threading.Lock()

    def heard(paths) -> None:
        now = time.perf_counter()
        with lock:
            for p in paths:
                seen.setdefault(str(p), now)

    base = rss_kb()
    started = time.perf_counter()
    stopper = None
    if name == "searchlib":
        from searchlib.indexer.watchsources import ChangeFeed

        feed = ChangeFeed([str(tree)], lambda p: True)
        feed.start()

        def pump():
            while True:
                heard(feed.get(0.5))
        threading.Thread(target=pump, daemon=True).start()
        stopper = feed.stop
    elif name == "watchdog":
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                heard([event.src_path])

        observer = Observer()
        observer.schedule(Handler(), str(tree), recursive=True)
        observer.start()
        stopper = observer.stop
    else:
        import watchfiles

        stop_event = threading.Event()

        def loop():
            for changes in watchfiles.watch(str(tree), stop_event=stop_event, debounce=50, step=10,
                                            rust_timeout=200):
                heard([p for _, p in changes])
        threading.Thread(target=loop, daemon=True).start()
        stopper = stop_event.set
    # Ready: a probe in the last folder is reported (the watches were added to every folder).
    last = sorted(tree.glob("d*/e*"))[-1]
    probe = last / "probe.dat"
    while str(probe) not in seen:
        probe.touch()
        time.sleep(0.01)
    ready = time.perf_counter() - started
    added = rss_kb() - base
    folders = sorted(tree.glob("d*/e*"))
    made: dict[str, float] = {}
    for i in range(2000):
        p = folders[i % len(folders)] / f"new{i}.dat"
        p.write_bytes(b"x")
        made[str(p)] = time.perf_counter()
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and not all(p in seen for p in made):
        time.sleep(0.05)
    delays = sorted(seen[p] - t for p, t in made.items() if p in seen)
    stopper()
    for p in made:
        os.unlink(p)
    probe.unlink()
    return {"source": name, "ready_s": round(ready, 3), "rss_added_mb": round(added / 1024, 1),
            "delivered": len(delays), "of": len(made),
            "p50_ms": round(1000 * delays[len(delays) // 2], 1) if delays else None}


def compare_sources(tree: Path) -> list[dict]:
    out = []
    for name in ("searchlib", "watchdog", "watchfiles"):
        r = subprocess.run([sys.executable, __file__, "--source", name, "--tree", str(tree)],
                           capture_output=True, text=True, timeout=300)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0
                   else {"source": name, "error": r.stderr.strip()[-300:]})
        print(out[-1], file=sys.stderr)
    return out


# -- the watcher as a process ------------------------------------------------------------------------

def rows(index_dir: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            return {os.fsdecode(bytes(p)): i for p, i in db.execute("select path, id from images")}
    except sqlite3.Error:
        return {}


class WatchProc:
    def __init__(self, index_dir: Path, folder: Path, *extra: str):
        self.proc = subprocess.Popen([EXE, "--index", str(index_dir), "watch", str(folder), "--model", TINY,
                                      "--device", "cpu", "--json", *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # the catch-up
        assert json.loads(line)["catch_up"], line
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)


def latency(work: Path, photos: list[Path], debounce: float) -> dict:
    folder, index_dir = work / "lat", work / "lat-index"
    folder.mkdir()
    shutil.copy(photos[0], folder / "first.jpg")  # so the model is loaded before the measurements
    w = WatchProc(index_dir, folder, "--debounce", str(debounce))
    delays = []
    for i, src in enumerate(photos[1:21]):
        target = folder / f"p{i}{src.suffix}"
        shutil.copy(src, target)
        written = time.perf_counter()
        while str(target) not in rows(index_dir):
            time.sleep(0.01)
        delays.append(time.perf_counter() - written)
    w.stop()
    delays.sort()
    return {"debounce_s": debounce, "files": len(delays), "p50_s": round(statistics.median(delays), 3),
            "p95_s": round(delays[int(0.95 * (len(delays) - 1))], 3)}


def burst(work: Path, source: Path, count: int) -> dict:
    """``index`` of ``count`` photos, against the watcher given the same photos two ways: a folder
    moved in at once (the watcher's own rate: the burst lands in an instant), and copied in file
    by file (a sync: the copy sets the pace; how long after its end the last photo is in)."""
    # Every index starts holding one photo, so that neither side's figure includes what a new index
    # does once at its end (exporting the text tower), which the watcher does after its commit.
    seed = write_images(work / "seed", 1, seed=99)[0]

    def index_once(n: int) -> float:
        cmd = [EXE, "--index", str(work / f"burst-index-{n}"), "index", "--model", TINY, "--device", "cpu", "--json"]
        subprocess.run([*cmd, str(seed.parent)], capture_output=True, text=True, check=True)
        r = subprocess.run([*cmd, str(source)], capture_output=True, text=True, check=True)
        return json.loads(r.stdout)["seconds"]

    # The machine is shared: index runs before and after the watcher's, their mean the baseline.
    index_runs = [index_once(0)]
    out: dict = {"files": count}
    for how in ("moved_in", "copied_in"):
        folder, index_dir = work / f"burst-{how}", work / f"burst-index-{how}"
        folder.mkdir()
        shutil.copy(seed, folder / seed.name)
        staged = work / f"staged-{how}"
        shutil.copytree(source, staged)
        w = WatchProc(index_dir, folder)
        started = time.perf_counter()
        if how == "moved_in":
            staged.rename(folder / "sync")
        else:
            shutil.copytree(staged, folder / "sync")
        copied = time.perf_counter()
        while len(rows(index_dir)) < count + 1:
            time.sleep(0.02)
        done = time.perf_counter()
        w.stop()
        out[how] = {"watch_s": round(done - started, 2)}
        if how == "copied_in":
            out[how].update(copy_s=round(copied - started, 2), after_copy_s=round(done - copied, 2))
        index_runs.append(index_once(len(index_runs)))
    index_s = statistics.mean(index_runs)
    out["index_s"] = [round(t, 2) for t in index_runs]
    for how in ("moved_in", "copied_in"):
        out[how]["rate_ratio"] = round(index_s / out[how]["watch_s"], 2)
    return out


def idle(work: Path, tree: Path, seconds: float) -> list[dict]:
    out = []
    procs = []
    empty = work / "empty"
    empty.mkdir()
    for mode, folder, extra in (("events", tree, ()), ("poll 10 s", tree, ("--poll", "10")),
                                ("events, an empty folder (baseline)", empty, ())):
        procs.append((mode, WatchProc(work / f"idle-index-{len(procs)}", folder, *extra)))
    time.sleep(2)
    before = {mode: cpu_seconds(w.proc.pid) for mode, w in procs}
    time.sleep(seconds)
    for mode, w in procs:
        used = cpu_seconds(w.proc.pid) - before[mode]
        out.append({"mode": mode, "idle_s": seconds, "cpu_s": round(used, 2),
                    "cpu_percent": round(100 * used / seconds, 2), "rss_mb": round(rss_kb(w.proc.pid) / 1024)})
        w.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree-files", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--debounce", type=float, default=0.5)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--parts", default="sources,latency,burst,idle", help="which measurements (comma-separated)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.source:
        print(json.dumps(run_source(args.source, args.tree)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        parts = args.parts.split(",")
        if "sources" in parts or "idle" in parts:
            t = time.perf_counter()
            make_tree(tree, args.tree_files)
            print(f"tree of {args.tree_files} files in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        source = work / "photos"
        photos = write_images(source, args.burst, seed=1)
        results: dict = {"machine": "2 CPU cores, shared", "tree_files": args.tree_files}
        if "sources" in parts:
            results["sources"] = compare_sources(tree)
        if "latency" in parts:
            results["latency"] = latency(work, photos, args.debounce)
        if "burst" in parts:
            results["burst"] = burst(work, source, args.burst)
        if "idle" in parts:
            results["idle"] = idle(work, tree, args.idle)
        print({k: v for k, v in results.items() if k != "sources"}, file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
