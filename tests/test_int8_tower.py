"""The int8 text tower: made at the end of an index run, used only where its fidelity gate passed,
its gate recorded and shown, its vectors never mixed with the fp32 tower's in the query cache."""

from __future__ import annotations

import json
import logging
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from searchlib import open_index, textquant
from searchlib.indexer import index_folder
from searchlib.querycache import CACHE_FILE
from searchlib.textenc import NOTE_FILE, ONNX_FILE, WEIGHTS_FILE, OnnxTextEncoder
from searchlib.textquant import INT8_FILE, INT8_NOTE, INT8_WEIGHTS, probe_texts, run_gate
from searchlib.verify import verify
from tests.conftest import TINY, write_images


def _towers(directory):
    """Both towers of an index directory, loaded directly (not through the index's choice)."""
    note = json.loads((directory / NOTE_FILE).read_text())
    int8 = json.loads((directory / INT8_NOTE).read_text())
    return OnnxTextEncoder(directory, note), OnnxTextEncoder(directory, note, INT8_FILE, int8["checksum"])


def _stored(directory) -> np.ndarray:
    from searchlib.catalog import Catalog

    catalog = Catalog(directory / "catalog.sqlite")
    try:
        return catalog.snapshot_vectors()[2]
    finally:
        catalog.close()


def _agreement(a: np.ndarray, b: np.ndarray, stored: np.ndarray, k: int) -> float:
    """Independent of textquant: full argsort, not argpartition."""
    top_a = np.argsort(-(a @ stored.T), axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-(b @ stored.T), axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)]))


@pytest.fixture
def int8_index(tmp_path):
    write_images(tmp_path / "p", 24, seed=3)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    return tmp_path


def test_index_run_gates_the_int8_tower_and_queries_use_it(int8_index, monkeypatch):
    directory = int8_index / "i"
    gate = json.loads((directory / INT8_NOTE).read_text())["gate"]
    fp32, int8 = _towers(directory)
    texts = probe_texts()
    a, b = fp32.embed_texts(texts), int8.embed_texts(texts)
    cosines = (a * b).sum(axis=1)
    assert gate["passed"] and gate["probes"] == len(texts) >= 200
    assert gate["min_cosine"] == pytest.approx(cosines.min(), abs=1e-4) and cosines.min() >= 0.99
    assert gate["mean_cosine"] == pytest.approx(cosines.mean(), abs=1e-4)
    assert gate["k"] == 10 and gate["stored_vectors"] == 24 == gate["vectors_sampled"]
    assert gate["top10_agreement"] == pytest.approx(_agreement(a, b, _stored(directory), 10), abs=0.02)
    assert any(not t.isascii() for t in texts)
    fp32_size = (directory / ONNX_FILE).stat().st_size + (directory / WEIGHTS_FILE).stat().st_size
    assert (directory / INT8_FILE).stat().st_size < 0.6 * fp32_size
    with open_index(directory) as index:
        assert index.text_encoder().tower == "int8"
        int8_hits = {q: [h.id for h in index.search(q, k=5)] for q in texts[:40]}
    monkeypatch.setenv(textquant.ENV, "0")
    with open_index(directory) as index:
        assert index.text_encoder().tower == "fp32"
        fp32_hits = {q: [h.id for h in index.search(q, k=5)] for q in texts[:40]}
    overlap = np.mean([len(set(int8_hits[q]) & set(fp32_hits[q])) / 5 for q in int8_hits])
    assert overlap >= 0.95, overlap  # the gate's promise, on whole searches


def test_a_failing_gate_keeps_fp32_and_says_so_until_it_passes(tmp_path, monkeypatch, caplog):
    write_images(tmp_path / "p", 12)
    monkeypatch.setattr(textquant, "MIN_COSINE", 0.999999)  # no int8 tower is that close
    with caplog.at_level(logging.WARNING, logger="searchlib.textquant"):
        index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    gate = json.loads((tmp_path / "i" / INT8_NOTE).read_text())["gate"]
    assert not gate["passed"] and "min cosine" in gate["reason"]
    assert any("failed its gate" in r.getMessage() for r in caplog.records)
    with open_index(tmp_path / "i") as index:
        assert index.text_encoder().tower == "fp32"
        assert index.info()["text_tower"]["in_use"] == "fp32"
    monkeypatch.setenv(textquant.ENV, "force")  # measured all the same (benchmarks)
    with open_index(tmp_path / "i") as index:
        assert index.text_encoder().tower == "int8"
    monkeypatch.delenv(textquant.ENV)
    monkeypatch.setattr(textquant, "MIN_COSINE", 0.99)  # other thresholds: the next run gates again
    index_folder(tmp_path / "i", tmp_path / "p", device="cpu", workers=0)
    assert json.loads((tmp_path / "i" / INT8_NOTE).read_text())["gate"]["passed"]
    with open_index(tmp_path / "i") as index:
        assert index.text_encoder().tower == "int8"


def test_a_broken_quantized_file_fails_the_gate(tmp_path, monkeypatch):
    """An int8 file that computes something else (a quantizer gone wrong) is caught by the gate."""
    real = textquant.quantize

    def broken(source, target, weights=None):
        real(source, target, weights)
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(target))
        for init in model.graph.initializer:  # scramble every int8 weight
            if init.data_type == onnx.TensorProto.INT8:
                values = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(np.random.default_rng(0).permutation(values.ravel())
                                                      .reshape(values.shape), init.name))
        onnx.save(model, str(target))

    monkeypatch.setattr(textquant, "quantize", broken)
    monkeypatch.setenv("SEARCHLIB_CACHE", str(tmp_path / "cache"))  # no kept int8 tower to copy
    write_images(tmp_path / "p", 12)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    gate = json.loads((tmp_path / "i" / INT8_NOTE).read_text())["gate"]
    assert not gate["passed"] and gate["min_cosine"] < 0.9
    with open_index(tmp_path / "i") as index:
        assert index.text_encoder().tower == "fp32"


def test_a_second_index_of_the_model_copies_the_kept_int8_tower(int8_index, tmp_path, monkeypatch):
    def no_quantizing(source, target):
        raise AssertionError("quantized again")

    monkeypatch.setattr(textquant, "quantize", no_quantizing)
    index_folder(tmp_path / "second", int8_index / "p", device="cpu", workers=0, model=TINY)
    assert (tmp_path / "second" / INT8_FILE).read_bytes() == (int8_index / "i" / INT8_FILE).read_bytes()
    gate = json.loads((tmp_path / "second" / INT8_NOTE).read_text())["gate"]
    assert gate["passed"] and gate["probes"] == len(probe_texts())
    with open_index(tmp_path / "second") as index:
        assert index.text_encoder().tower == "int8"


@pytest.mark.parametrize("name", [INT8_FILE, INT8_WEIGHTS])
def test_a_damaged_int8_file_falls_back_to_fp32_and_is_made_again(int8_index, caplog, name):
    """The int8 graph or its weights file."""
    directory = int8_index / "i"
    assert (directory / INT8_WEIGHTS).stat().st_size > 4 * (directory / INT8_FILE).stat().st_size
    data = bytearray((directory / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum notices
    (directory / name).write_bytes(bytes(data))
    fp32 = OnnxTextEncoder(directory, json.loads((directory / NOTE_FILE).read_text()))
    with open_index(directory) as index:
        report = verify(index, check_files=False)
    assert report.ok and any("int8 text tower does not match" in n for n in report.notes)
    with caplog.at_level(logging.WARNING, logger="searchlib.textquant"), open_index(directory) as index:
        vector = index.embed_texts(["a damaged tower"])[0]
        assert index.text_encoder().tower == "fp32"
    assert any("int8 text tower" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(vector, fp32.embed_texts(["a damaged tower"])[0])
    keys = sqlite3.connect(directory / CACHE_FILE).execute("SELECT encoder FROM vectors WHERE text = ?",
                                                           ("a damaged tower",)).fetchall()
    assert [k.split(":")[0] for (k,) in keys] == ["onnx"]  # stored under the tower that made it
    assert not (directory / INT8_NOTE).exists()  # removed: the next index run makes it again
    index_folder(directory, int8_index / "p", device="cpu", workers=0)
    with open_index(directory) as index:
        assert index.text_encoder().tower == "int8"


def test_a_damaged_fp32_tower_under_an_int8_one(int8_index, tmp_path, monkeypatch):
    """The int8 tower answers on; verify reports the fp32 file, --repair exports it again, and an
    int8 tower is never quantized from a damaged fp32 file."""
    from searchlib.cli.main import main

    directory = int8_index / "i"
    with open_index(directory) as index:
        expected = [h.id for h in index.search("a red circle", k=5)]
    data = bytearray((directory / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / ONNX_FILE).write_bytes(bytes(data))
    with open_index(directory) as index:
        assert index.text_encoder().tower == "int8"
        assert [h.id for h in index.search("a red circle", k=5)] == expected
        identity = index.identity
    with monkeypatch.context() as patched:
        patched.setenv("SEARCHLIB_CACHE", str(tmp_path / "empty-cache"))  # nothing kept to copy
        (directory / INT8_NOTE).unlink()  # the int8 tower must be made again, from the damaged file
        with pytest.raises(ValueError, match="damaged"):
            textquant.ensure_int8(directory, json.loads((directory / NOTE_FILE).read_text()), identity, 24,
                                  lambda n: _stored(directory))
    assert not (directory / INT8_NOTE).exists()
    found = CliRunner().invoke(main, ["--index", str(directory), "verify"])
    assert found.exit_code != 0 and "exported text tower does not match its checksum" in found.output
    out = CliRunner().invoke(main, ["--index", str(directory), "verify", "--repair"])
    assert out.exit_code == 0, out.output
    assert CliRunner().invoke(main, ["--index", str(directory), "verify"]).exit_code == 0
    index_folder(directory, int8_index / "p", device="cpu", workers=0)
    with open_index(directory) as index:
        assert index.text_encoder().tower == "int8"


def test_int8_and_fp32_vectors_never_mix_in_the_query_cache(int8_index, monkeypatch):
    directory = int8_index / "i"
    fp32, int8 = _towers(directory)
    text = "a cached query"
    want_fp32, want_int8 = fp32.embed_texts([text])[0], int8.embed_texts([text])[0]
    assert not np.array_equal(want_fp32, want_int8)
    with open_index(directory) as index:
        np.testing.assert_array_equal(index.embed_texts([text])[0], want_int8)
    monkeypatch.setenv(textquant.ENV, "0")
    with open_index(directory) as index:  # the int8 vector is in the cache file: not for this tower
        np.testing.assert_array_equal(index.embed_texts([text])[0], want_fp32)
    monkeypatch.delenv(textquant.ENV)
    with open_index(directory) as index:
        np.testing.assert_array_equal(index.embed_texts([text])[0], want_int8)
        assert index.text_encoder().tower == "int8"
    keys = sorted(k.split(":")[0] for (k,) in sqlite3.connect(directory / CACHE_FILE).execute(
        "SELECT encoder FROM vectors WHERE text = ?", (text,)))
    assert keys == ["onnx", "onnx-int8"]


def test_info_shows_the_gate(int8_index):
    from searchlib.cli.main import main

    directory = int8_index / "i"
    out = CliRunner().invoke(main, ["--index", str(directory), "info", "--json"])
    assert out.exit_code == 0, out.output
    tower = json.loads(out.stdout)["text_tower"]
    gate = json.loads((directory / INT8_NOTE).read_text())["gate"]
    assert tower == {"in_use": "int8", "tokens": "own", "int8_gate": gate}
    text = CliRunner().invoke(main, ["--index", str(directory), "info"])
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("text tower:"))
    assert "int8 ONNX over each text's own tokens; int8 gate passed" in line and f"{gate['min_cosine']:.4f}" in line
    assert f"{gate['probes']} probes" in line and gate["when"] in line
    from searchlib.info import text_tower

    with open_index(directory) as index:
        identity = index.identity
    on_gpu = text_tower(directory, identity, device="cuda")  # there the full model answers texts
    assert on_gpu == {"in_use": "model", "tokens": None, "int8_gate": gate}


def test_a_tiny_index_gates_on_cosine_then_again_when_it_grows(tmp_path):
    write_images(tmp_path / "p", 1)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    gate = json.loads((tmp_path / "i" / INT8_NOTE).read_text())["gate"]
    assert gate["passed"] and gate["top10_agreement"] is None and gate["k"] == 0
    before = (tmp_path / "i" / INT8_NOTE).stat().st_mtime_ns
    index_folder(tmp_path / "i", tmp_path / "p", device="cpu", workers=0)  # nothing changed: no new gate
    assert (tmp_path / "i" / INT8_NOTE).stat().st_mtime_ns == before
    write_images(tmp_path / "p", 24, seed=9)
    index_folder(tmp_path / "i", tmp_path / "p", device="cpu", workers=0)
    gate = json.loads((tmp_path / "i" / INT8_NOTE).read_text())["gate"]
    assert gate["stored_vectors"] == 25 and gate["k"] == 10 and gate["top10_agreement"] is not None


def test_gate_figures_match_an_independent_computation():
    rng = np.random.default_rng(1)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    fp32 = unit(rng.normal(size=(50, 32)))
    stored = unit(rng.normal(size=(300, 32)))
    for noise, passes in ((0.01, True), (0.3, False)):
        int8 = unit(fp32 + noise * rng.normal(size=fp32.shape) / np.sqrt(32))
        gate = run_gate(fp32, int8, stored, 300)
        assert gate["min_cosine"] == pytest.approx(float((fp32 * int8).sum(axis=1).min()), abs=1e-5)
        assert gate["top10_agreement"] == pytest.approx(_agreement(fp32, int8, stored, 10), abs=1e-4)
        assert gate["passed"] is passes
    few = run_gate(fp32, fp32, stored[:7], 7)
    assert few["k"] == 3 and few["top10_agreement"] == 1.0


@pytest.mark.slow
def test_bundled_model_int8_tower_passes_its_gate_on_real_photos_of_shapes(tmp_path):
    """The bundled (trained) model: its int8 tower on a real index of synthetic pictures."""
    from searchlib.synthetic import generate

    (tmp_path / "p").mkdir()
    for i, sample in enumerate(generate(40, 5)):
        sample.image.save(tmp_path / "p" / f"{i:03d}.png")
    index_folder(tmp_path / "i", tmp_path / "p", model="bundled", device="cpu", workers=0)
    gate = json.loads((tmp_path / "i" / INT8_NOTE).read_text())["gate"]
    assert gate["passed"], gate
    fp32, int8 = _towers(tmp_path / "i")
    texts = probe_texts()
    assert gate["top10_agreement"] == pytest.approx(
        _agreement(fp32.embed_texts(texts), int8.embed_texts(texts), _stored(tmp_path / "i"), 10), abs=0.02)
    with open_index(tmp_path / "i") as index:
        assert index.text_encoder().tower == "int8"


def test_an_int8_vector_does_not_depend_on_its_batch(int8_index):
    """Dynamic quantization scales each activation tensor as a whole: batched, a text's vector
    would change with its neighbours, and the query cache would hand out another vector."""
    _, int8 = _towers(int8_index / "i")
    alone = int8.embed_texts(["a red circle"])[0]
    for batch in (["a red circle", "a blue star"], ["x" * 300, "a red circle", "🐱"]):
        np.testing.assert_array_equal(int8.embed_texts(batch)[batch.index("a red circle")], alone)


@pytest.mark.parametrize("garble", ['{"gate": 3}', "{", {}, {"stored_vectors": "many"}, {"passed": "yes"}])
def test_a_garbled_int8_note_means_fp32_and_a_new_gate(int8_index, garble):
    from searchlib.cli.main import main

    directory = int8_index / "i"
    note = json.loads((directory / INT8_NOTE).read_text())
    if isinstance(garble, dict):  # the right checksums, a gate with a figure missing or of the wrong type
        note["gate"] = {**note["gate"], **garble} if garble else {}
        garble = json.dumps(note)
    (directory / INT8_NOTE).write_text(garble)
    (directory / textquant.PROBES_FILE).write_bytes(b"PK\x03\x04 not a zip")
    info = CliRunner().invoke(main, ["--index", str(directory), "info"])
    assert info.exit_code == 0 and "fp32 ONNX over each text's own tokens; int8 gate: not run" in info.output
    with open_index(directory) as index:
        assert index.text_encoder().tower == "fp32"
    index_folder(directory, int8_index / "p", device="cpu", workers=0)
    assert json.loads((directory / INT8_NOTE).read_text())["gate"]["passed"]
    with open_index(directory) as index:
        assert index.text_encoder().tower == "int8"
