"""The library as an app embeds it: images in every form, cancelling, raising callbacks, removal
and thread-safe search.

Each test failed before its fix (most from a newcomer's pass, issue 11)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from searchlib import open_index
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images


def test_pil_images_bytes_and_paths_are_all_accepted(small):
    import searchlib

    probe = next((small / "p").iterdir())
    with open_index(small / "i") as index:
        by_path = index.search(probe, k=1)[0]
        by_pil = index.search(Image.open(probe), k=1)[0]
        by_bytes = index.search(probe.read_bytes(), k=1)[0]
    assert by_path.id == by_pil.id == by_bytes.id and by_pil.score > 0.99
    vecs = searchlib.embed_images([Image.open(probe), probe.read_bytes(), str(probe)], model=TINY, device="cpu")
    assert vecs.shape[0] == 3 and np.allclose(vecs[1], vecs[2], atol=1e-5)


def test_cancel_keeps_committed_work(tmp_path):
    import searchlib

    write_images(tmp_path / "p", 40)
    stop = threading.Event()

    def progress(p):
        if p.phase == "embedding" and p.done >= 8:
            stop.set()

    report = searchlib.index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0,
                                    batch_size=4, progress=progress, cancel=stop)
    assert report.cancelled and 8 <= report.added < 40
    with open_index(tmp_path / "i") as index:
        assert index.info()["images"] == report.added == index.vectors.ntotal
    again = searchlib.index_folder(tmp_path / "i", tmp_path / "p", device="cpu", workers=0)
    assert again.added == 40 - report.added and again.unchanged == report.added


def test_a_raising_progress_callback_keeps_what_was_embedded(tmp_path):
    write_images(tmp_path / "p", 20)

    def progress(p):
        if p.phase == "embedding" and p.done >= 12:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError):
        index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0, batch_size=4,
                     progress=progress)
    with open_index(tmp_path / "i") as index:
        assert index.info()["images"] >= 8


def test_remove_and_thread_safe_search(tmp_path):
    files = write_images(tmp_path / "p", 8)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    with open_index(tmp_path / "i") as index:
        assert index.remove([files[0], files[1], tmp_path / "not-indexed.jpg"]) == 2
        assert index.info()["images"] == index.vectors.ntotal == 6
        expected = [h.id for h in index.search("a red circle", k=5)]
        errors, results = [], []

        def work():
            try:
                for _ in range(50):
                    results.append([h.id for h in index.search("a red circle", k=5)])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(results) == 200 and all(r == expected for r in results)
