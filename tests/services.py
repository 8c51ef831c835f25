"""System services the tests start themselves (PostgreSQL, Chromium), and what to do without them.

On a fresh machine the README's test command must pass: a test needing a service that is not
installed is skipped with one line saying how to get it. Under ``CI=true`` (``.ci/run`` sets it,
and installs both) a missing service fails the test instead, so CI never skips them silently.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether the suite runs under CI (``CI=true``, as .ci/run and most CI systems set)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_service(what: str, how: str) -> NoReturn:
    """Skip the test (fail it under CI) because ``what`` is missing; ``how`` says how to get it."""
    message = f"{what}: {how}"
    if in_ci():
        pytest.fail(f"{message} (CI=true requires it)", pytrace=False)
    pytest.skip(message)
