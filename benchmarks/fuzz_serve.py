"""A longer schemathesis run against the API (issue 24 #1): the suite's contract test
(tests/test_contract.py) with more examples, seed after seed, until ``--seconds`` are spent.

Every operation gets valid and invalid examples and all of schemathesis's checks (no 5xx; every
status, content type and header declared; bodies matching their schema; invalid requests refused;
405s with Allow); a schema-valid request may be refused only for a rule no JSON Schema can state
(tests/contract_fuzz.py SEMANTIC). The baseline in the same run is one derandomized pass of 10
examples per operation and mode (its requests and time), so the report says how many times more
was tried.

    python benchmarks/fuzz_serve.py --seconds 300 --json benchmarks/results-fuzz-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.contract_fuzz import fuzz, load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--examples", type=int, default=40, help="examples per operation and mode, per seed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from searchlib.indexer import index_folder
    from searchlib.indexer.demo import make_demo_folder
    from searchlib.web import create_app

    root = Path(tempfile.mkdtemp(prefix="searchlib-fuzz-"))
    make_demo_folder(root / "photos", count=12)
    index_folder(root / "index", root / "photos", model="bundled", device="cpu", workers=0)
    schema = load(create_app(root / "index", device="cpu"))
    started = time.monotonic()
    failures, base_sent = fuzz(schema, 10)  # the baseline: one derandomized pass
    base_s = time.monotonic() - started
    stop_at = started + args.seconds
    seeds, sent = 0, base_sent
    while time.monotonic() < stop_at and not failures:
        found, n = fuzz(schema, args.examples, run_seed=seeds + 1, stop_at=stop_at)
        failures += found
        sent += n
        seeds += 1
    took = time.monotonic() - started
    report = {"passed": not failures, "seconds": round(took, 1), "requests": sent, "seeds": seeds,
              "examples_per_operation_and_mode": args.examples,
              "baseline_suite_run": {"requests": base_sent, "seconds": round(base_s, 1)},
              "requests_vs_suite_run": round(sent / max(1, base_sent), 1), "failures": failures[:10],
              "command": "python benchmarks/fuzz_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
