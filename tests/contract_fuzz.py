"""Fuzzing the API against its own OpenAPI document with schemathesis: every operation, valid then
invalid examples, all checks. Shared by tests/test_contract.py (a short seeded run in the suite)
and benchmarks/fuzz_serve.py (a longer one, many seeds)."""

from __future__ import annotations

import re
import time

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import positive_data_acceptance

#: What a schema-valid request may still be refused for, because no JSON Schema can say it: rules
#: across parameters (a page past the deepest hit, an empty date range, ids or an image, a radius
#: without a centre), the query language (terms, weights) and the labels list, an upload
#: that is not an image (or is empty, or a plain field where a file part is wanted), labels that
#: are fewer than two once split. Unknown ids are 404s, which schemathesis allows too. Anything
#: else refused with a 400 is a schema that promises more than the server takes, and fails.
SEMANTIC = re.compile(r"offset \+ k must be|date range is empty|not a readable image|cannot be decoded|"
                      r"at least two comma-separated labels|give ids or an image|no image with id|"
                      r"uploaded file is empty|Expected UploadFile|within needs near|"
                      r"can be combined|terms cancel out|the weight of|an empty query term|labels; at most|"
                      r"a label is longer|ids at once")
HOST = {"Host": "localhost"}


def load(app) -> schemathesis.BaseSchema:
    """The schema of ``app`` as schemathesis reads it (asked for as http://localhost)."""
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=HOST)


def fuzz(schema, examples: int, run_seed: int | None = None, stop_at: float | None = None) -> tuple[list[str], int]:
    """(the failures found, the number of requests sent): ``examples`` per operation and mode;
    derandomized when ``run_seed`` is None, else seeded with it. Stops starting operations after
    ``stop_at`` (a ``time.monotonic()``)."""
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            if stop_at is not None and time.monotonic() > stop_at:
                return failures, sent

            def one(case):
                nonlocal sent
                sent += 1
                response = case.call_and_validate(base_url="http://localhost", headers=HOST,
                                                  excluded_checks=[positive_data_acceptance])
                if case.meta.generation.mode.is_positive and response.status_code >= 400:
                    error = response.json().get("error", "")
                    assert response.status_code == 404 or (response.status_code == 400 and SEMANTIC.search(error)), \
                        f"schema-valid request refused: {response.status_code} {error}\n{case.as_curl_command()}"

            test = settings(max_examples=examples, deadline=None, derandomize=run_seed is None, database=None,
                            suppress_health_check=list(HealthCheck))(given(operation.as_strategy(generation_mode=mode))(one))
            if run_seed is not None:
                test = seed(run_seed)(test)
            try:
                test()
            except Unsatisfiable:  # no parameters: nothing to make invalid
                continue
            except BaseException as e:  # every check's failure (a group, often) is reported, not just the first
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                failures.append(f"{operation.label} ({mode.value}): {e}")
    return failures, sent
