"""Shared fixtures: generated images, a tiny random-init model, fresh index directories."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
if "SEARCHLIB_CACHE" not in os.environ:  # exported ONNX towers go to a throwaway place
    import tempfile

    os.environ["SEARCHLIB_CACHE"] = tempfile.mkdtemp(prefix="searchlib-test-cache-")

#: A tiny open_clip architecture with seeded random weights: fast, and loaded through the same path
#: as any real model.
TINY = "searchlib-tiny/random"


def make_exif(taken: str | None = None, make: str | None = None, model: str | None = None,
              orientation: int | None = None, gps: tuple[float, float] | None = None) -> Image.Exif:
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation:
        exif[0x0112] = orientation
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if gps:
        lat, lon = gps
        ifd = exif.get_ifd(0x8825)

        def dms(v: float):
            v = abs(v)
            d = int(v)
            m = int((v - d) * 60)
            s = round(((v - d) * 60 - m) * 60, 4)
            return (float(d), float(m), float(s))

        ifd[1], ifd[2] = ("N" if lat >= 0 else "S"), dms(lat)
        ifd[3], ifd[4] = ("E" if lon >= 0 else "W"), dms(lon)
    return exif


def write_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (64, 48)) -> list[Path]:
    """Random-content images (JPEG and PNG alternately) with distinct pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        ext = "jpg" if i % 2 == 0 else "png"
        path = folder / f"img_{seed}_{i:03d}.{ext}"
        img.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_images(folder, 12)
    return folder


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture(scope="session")
def tiny_embedder():
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    return Embedder(parse_model_spec(TINY), device="cpu")


def started_postgres():
    """A new, started PostgreSQL server (skipped, or failed under CI, where PostgreSQL is missing)."""
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    if not server.available:
        from tests.services import missing_service

        missing_service("PostgreSQL is not available here", "apt-get install -y postgresql and run the tests "
                        "as root (.ci/run does both)")
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (started on first use; .ci/run installs PostgreSQL)."""
    server = started_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request, tmp_path):
    """A fresh, empty catalog on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small index (one per test module) of 6 images (plus odd names added by the tests that need them)."""
    root = tmp_path_factory.mktemp("small")
    write_images(root / "p", 6)
    from searchlib.indexer import index_folder

    index_folder(root / "i", root / "p", model=TINY, device="cpu", workers=0)
    return root


@pytest.fixture(autouse=True)
def _log_levels_restored():
    """The CLI quiets the 'searchlib' logger for its run (cli/main.py); a test that invokes it in
    this process must not leave later tests unable to see the library's warnings."""
    import logging

    names = ("searchlib", "root", "huggingface_hub", "open_clip", "transformers")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
