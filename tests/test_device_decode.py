"""The device JPEG path (nvJPEG on CUDA), exercised here through torchvision's CPU decoder.

Everything but the decoder call itself is the same code on both devices: header checks, batching,
EXIF orientation, the resize/crop geometry, the fallback to Pillow, the CPU/device split and the
indexer wiring. Pixels are compared with Pillow's full-decode reference path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchlib import devicedecode
from searchlib.devicedecode import DeviceJpegDecoder, device_decoding_supported
from searchlib.imaging import Preprocess, decode_for_model
from searchlib.indexer import index_folder
from searchlib.indexer.embedstage import EmbedStage
from searchlib.indexer.pipeline import Decoded, decode_file, decode_stream
from searchlib.indexer.scan import FileEntry
from searchlib.indexer.split import DecodeSplit
from searchlib.jpeginfo import jpeg_info

from .conftest import TINY, make_exif


def smooth_jpeg(w: int, h: int, seed: int = 0, orientation: int | None = None, mode: str = "RGB",
                **save) -> bytes:
    """A photo-like (smooth) JPEG: upsampled noise, so decoders agree to within rounding."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC)
    if mode != "RGB":
        img = img.convert(mode)
    if orientation:
        save["exif"] = make_exif(orientation=orientation).tobytes()
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


# -- headers -------------------------------------------------------------------------------------
def test_jpeg_info_tells_what_the_device_decoder_handles():
    base = jpeg_info(smooth_jpeg(64, 48))
    assert base is not None and (base.width, base.height, base.components) == (64, 48, 3)
    assert base.device_decodable and not base.progressive
    gray = jpeg_info(smooth_jpeg(40, 30, mode="L"))
    assert gray.components == 1 and gray.device_decodable
    prog = jpeg_info(smooth_jpeg(64, 48, progressive=True))
    assert prog.progressive and not prog.device_decodable
    cmyk = jpeg_info(smooth_jpeg(64, 48, mode="CMYK"))
    assert cmyk.components == 4 and not cmyk.device_decodable
    exif = jpeg_info(smooth_jpeg(64, 48, orientation=6))  # APP1 before the frame header is skipped
    assert exif.width == 64 and exif.device_decodable
    cut = jpeg_info(smooth_jpeg(64, 48)[:-30])  # truncated: Pillow decides (and reports it)
    assert not cut.complete and not cut.device_decodable


def test_jpeg_info_rejects_what_is_not_a_jpeg():
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    assert jpeg_info(png.getvalue()) is None
    assert jpeg_info(b"") is None and jpeg_info(b"\xff\xd8") is None
    good = smooth_jpeg(32, 32)
    assert jpeg_info(good[:40]) is None  # cut inside a segment
    assert jpeg_info(b"\xff\xd8\xff\xe0\x00\x01") is None  # impossible segment length


# -- decoder -------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_device_decoder_matches_pillow_reference_for_every_orientation(orientation):
    data = smooth_jpeg(96, 64, seed=orientation, orientation=orientation)
    prep = Preprocess(32)
    ref = decode_for_model(data, prep, reduce=False)[0].astype(int)
    result = DeviceJpegDecoder(prep, "cpu").decode([data], [orientation])
    assert result.ok == [0] and not result.failed
    got = result.pixels[0].numpy().astype(int)
    diff = np.abs(got - ref)
    assert diff.mean() < 0.6 and diff.max() <= 3, (diff.mean(), diff.max())


@pytest.mark.parametrize("prep,size", [
    (Preprocess(32), (20, 15)),  # smaller than the input: upscaled
    (Preprocess(32), (32, 48)),  # short side already the input size: crop only
    (Preprocess(32, "bilinear"), (90, 40)),
    (Preprocess(32, "bicubic", "squash"), (90, 40)),
    (Preprocess(32, "bicubic", "longest"), (90, 40)),  # padded
])
def test_device_decoder_geometry_matches_pillow(prep, size):
    data = smooth_jpeg(*size, seed=3)
    ref = decode_for_model(data, prep, reduce=False)[0].astype(int)
    got = DeviceJpegDecoder(prep, "cpu").decode([data]).pixels[0].numpy().astype(int)
    assert got.shape == ref.shape == (32, 32, 3)
    diff = np.abs(got - ref)
    assert diff.mean() < 0.8 and diff.max() <= 4, (diff.mean(), diff.max())


def test_lanczos_models_keep_cpu_decoding():
    assert device_decoding_supported(Preprocess(224))
    assert not device_decoding_supported(Preprocess(224, "lanczos"))


def test_batch_with_bad_and_unsupported_files_keeps_the_good_ones(monkeypatch):
    prep = Preprocess(32)
    good = [smooth_jpeg(64, 48, seed=i) for i in range(5)]
    corrupt = bytearray(good[0])
    dht = corrupt.index(b"\xff\xc4")
    corrupt[dht + 5:dht + 21] = b"\xff" * 16  # a broken Huffman table: the header check passes it
    truncated = good[1][:-60]
    datas = [good[0], bytes(corrupt), good[1], smooth_jpeg(64, 48, progressive=True), good[2], b"junk",
             good[3], truncated, good[4]]
    # A tiny pixel budget forces one decode call per file: the chunking path is covered too.
    monkeypatch.setattr(devicedecode, "MAX_DECODE_PIXELS", 64 * 48 * 2)
    result = DeviceJpegDecoder(prep, "cpu").decode(datas)
    assert result.ok == [0, 2, 4, 6, 8]
    assert set(result.failed) == {1, 3, 5, 7}
    assert "Huffman" in result.failed[1]
    assert all("device decoder handles" in result.failed[i] for i in (3, 5, 7))
    for row, i in enumerate(result.ok):
        ref = decode_for_model(datas[i], prep, reduce=False)[0].astype(int)
        assert np.abs(result.pixels[row].numpy().astype(int) - ref).mean() < 0.6


def test_equal_sized_images_resize_together_and_mixed_sizes_keep_their_order():
    prep = Preprocess(32)
    datas = [smooth_jpeg(*s, seed=i) for i, s in enumerate([(64, 48), (48, 64), (64, 48), (100, 30), (64, 48)])]
    batch = DeviceJpegDecoder(prep, "cpu").decode(datas).pixels.numpy()
    alone = np.stack([DeviceJpegDecoder(prep, "cpu").decode([d]).pixels[0].numpy() for d in datas])
    np.testing.assert_array_equal(batch, alone)


# -- the split -----------------------------------------------------------------------------------
def test_split_balances_workers_and_device_by_measured_cost():
    split = DecodeSplit(workers=16)
    for _ in range(50):
        split.observe_file(0.100, offered=False, to_device=False)  # 12 MP draft decode on a core
        split.observe_file(0.002, offered=True, to_device=True)  # read + hash only
        split.observe_device(decoded=64, decode_seconds=64 * 0.002, embedded=128, model_seconds=128 * 0.00005)
    # d* = (t_c - W m) / (W g + t_c - t_r) = (0.1 - 0.0008) / (0.032 + 0.098)
    expected = (0.1 - 16 * 0.00005) / (16 * 0.002 + 0.1 - 0.002)
    assert split.device_share() == pytest.approx(expected, rel=1e-6)
    offers = sum(split() for _ in range(1000))
    assert abs(offers - 1000 * expected) <= 1  # error diffusion: as even as it gets
    # Both sides then run at the same rate: the balance the formula promises.
    cpu_rate = 16 / ((1 - expected) * 0.1 + expected * 0.002)
    device_rate = 1 / (expected * 0.002 + 0.00005)
    assert cpu_rate == pytest.approx(device_rate, rel=1e-6)


def test_split_keeps_files_on_fast_cpus_and_offers_more_when_few_are_eligible():
    fast_cpu = DecodeSplit(workers=16)
    fast_cpu.observe_file(0.0005, offered=False, to_device=False)
    fast_cpu.observe_device(decoded=10, decode_seconds=0.02, embedded=10, model_seconds=0.01)
    assert fast_cpu.device_share() == 0.0 and not any(fast_cpu() for _ in range(100))
    half_png = DecodeSplit(workers=4)
    for i in range(200):  # half of the files offered are PNGs: they stay on the CPU
        half_png.observe_file(0.002 if i % 2 == 0 else 0.05, offered=True, to_device=i % 2 == 0)
    half_png.observe_device(decoded=10, decode_seconds=0.2, embedded=10, model_seconds=0.01)
    share = half_png.device_share()  # (0.05 - 0.04) / (0.08 + 0.05 - 0.002)
    assert 0.05 < share < 0.5
    assert half_png.offer == pytest.approx(share / half_png.eligible.value) and half_png.offer > share


def test_fixed_split_offers_everything():
    split = DecodeSplit(workers=2, start=1.0, fixed=True)
    split.observe_file(0.0001, offered=False, to_device=False)
    split.observe_device(decoded=1, decode_seconds=1.0, embedded=1, model_seconds=1.0)
    assert all(split() for _ in range(50))


# -- the worker side and the device stage -------------------------------------------------------
def _entry(path: Path) -> FileEntry:
    st = path.stat()
    return FileEntry(str(path), st.st_size, st.st_mtime_ns)


def test_offered_jpegs_come_back_marked_for_the_device_with_metadata_others_as_pixels(tmp_path):
    jpg, prog, png = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.png"
    jpg.write_bytes(smooth_jpeg(64, 48, orientation=6))
    prog.write_bytes(smooth_jpeg(64, 48, progressive=True))
    Image.new("RGB", (20, 20)).save(png)
    prep = Preprocess(32)
    a = decode_file(_entry(jpg), prep, None, offer_device=True)
    assert a.pixels is None and a.for_device and a.offered
    assert (a.metadata.width, a.metadata.height, a.metadata.orientation) == (48, 64, 6)
    for path in (prog, png):
        other = decode_file(_entry(path), prep, None, offer_device=True)
        assert not other.for_device and other.pixels.shape == (32, 32, 3)
    assert not decode_file(_entry(jpg), prep, None).for_device  # not offered: decoded here


class _RefusingDecoder(DeviceJpegDecoder):
    """A device decoder that fails every file (as nvJPEG would on a file it cannot handle)."""

    def _decode_chunk(self, datas):
        return ["refused"] * len(datas)


def test_files_the_device_decoder_refuses_are_decoded_by_pillow(tmp_path):
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(smooth_jpeg(64, 48, seed=i))
    bad = tmp_path / "bad.jpg"
    broken = bytearray(paths[0].read_bytes())
    dht = broken.index(b"\xff\xc4")
    broken[dht + 5:dht + 21] = b"\xff" * 16  # passes the header check, no decoder can read it
    bad.write_bytes(bytes(broken))
    embedder = Embedder(parse_model_spec(TINY), device="cpu")
    prep = embedder.preprocess
    items = [decode_file(_entry(p), prep, None, offer_device=True) for p in paths + [bad]]
    assert all(isinstance(d, Decoded) and d.for_device for d in items)
    stage = EmbedStage(embedder, _RefusingDecoder(prep, "cpu"))
    try:
        stage.submit(items)
        (done,) = stage.collect(wait=True)
    finally:
        stage.close()
    assert [os.path.basename(d.path) for d in done.items] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert [os.path.basename(f.path) for f in done.failures] == ["bad.jpg"]
    expected = embedder.embed_pixels(np.stack([decode_for_model(p.read_bytes(), prep)[0] for p in paths]))
    np.testing.assert_allclose(done.vectors, expected, atol=1e-5)


def _small_jpegs(tmp_path: Path, count: int, odd: tuple[int, str] | None = None) -> list[FileEntry]:
    """``count`` tiny JPEGs in name order; ``odd`` = (position, name) renames one of them."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(count):
        name = odd[1] if odd and odd[0] == i else f"{i:03d}.jpg"
        (folder / name).write_bytes(smooth_jpeg(24, 16, seed=i))
    return [_entry(p) for p in sorted(folder.iterdir())]


def test_small_files_travel_in_chunks_and_keep_their_order(tmp_path):
    entries = _small_jpegs(tmp_path, 120)
    results = list(decode_stream(entries, Preprocess(16), workers=2))
    assert [r.path for r in results] == [e.path for e in entries]
    assert all(isinstance(r, Decoded) and r.pixels.shape == (16, 16, 3) for r in results)


def test_device_stage_reads_files_as_they_are_now(tmp_path):
    """A file rewritten or deleted between its worker and the device stage is never mis-stored."""
    import hashlib

    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    embedder = Embedder(parse_model_spec(TINY), device="cpu")
    prep = embedder.preprocess
    same, changed, gone = tmp_path / "same.jpg", tmp_path / "changed.jpg", tmp_path / "gone.jpg"
    for i, path in enumerate((same, changed, gone)):
        path.write_bytes(smooth_jpeg(64, 48, seed=i))
    items = [decode_file(_entry(p), prep, None, offer_device=True) for p in (same, changed, gone)]
    new_bytes = smooth_jpeg(40, 60, seed=9, orientation=6)
    changed.write_bytes(new_bytes)
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))
    gone.unlink()
    stage = EmbedStage(embedder, DeviceJpegDecoder(prep, "cpu"))
    try:
        stage.submit(items)
        (done,) = stage.collect(wait=True)
    finally:
        stage.close()
    assert [os.path.basename(d.path) for d in done.items] == ["same.jpg", "changed.jpg"]
    assert [os.path.basename(f.path) for f in done.failures] == ["gone.jpg"]
    assert "cannot read" in done.failures[0].error
    now = done.items[1]
    assert now.content_hash == hashlib.sha256(new_bytes).hexdigest()
    assert (now.size, now.mtime_ns) == (len(new_bytes), 1_000_000_000)
    assert (now.metadata.width, now.metadata.height, now.metadata.orientation) == (60, 40, 6)
    expected = embedder.embed_pixels(decode_for_model(new_bytes, prep)[0][None])[0]
    assert float(done.vectors[1] @ expected) > 0.999


def test_a_hang_inside_a_chunk_costs_that_file_only(tmp_path):
    from tests.helpers import hanging_decode

    entries = _small_jpegs(tmp_path, 60, odd=(30, "030-hang.jpg"))
    results = list(decode_stream(entries, Preprocess(16), workers=2, timeout=3.0, worker=hanging_decode))
    assert [r.path for r in results] == [e.path for e in entries]
    failed = [os.path.basename(r.path) for r in results if not isinstance(r, Decoded)]
    assert failed == ["030-hang.jpg"]


def test_a_decoder_crash_costs_that_file_only(tmp_path):
    from tests.helpers import crashing_decode

    entries = _small_jpegs(tmp_path, 40, odd=(20, "020-crash.jpg"))
    results = list(decode_stream(entries, Preprocess(16), workers=2, worker=crashing_decode))
    assert [r.path for r in results] == [e.path for e in entries]
    failed = [(os.path.basename(r.path), r.error) for r in results if not isinstance(r, Decoded)]
    assert failed == [("020-crash.jpg", "the decoder crashed (exit code 139)")]


def test_a_chunk_sent_to_a_worker_that_just_died_is_not_lost(tmp_path):
    # The race behind a flaky failure: a worker dies on a file while the pool is handing it its
    # next chunk; the send hit a broken pipe and the whole run failed.
    from searchlib.indexer.pipeline import _decode_job, _Worker

    entries = _small_jpegs(tmp_path, 4)
    w = _Worker(np.zeros(0, np.uint64), _decode_job)
    w.process.kill()
    w.process.wait()
    jobs = [(e, Preprocess(16), None, False) for e in entries]
    for _ in range(64):  # enough to fill the socket's buffer if the first sends do not fail
        w.send(7, 0, jobs)
    assert len(w.sent) == 64 and w.sent[0] == (7, 0, jobs)  # kept: the pool sends them again
    w.stop(kill=True)


def test_ctrl_c_while_indexing_stops_cleanly_and_keeps_committed_work(tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(500):
        (folder / f"{i:03d}.jpg").write_bytes(smooth_jpeg(160, 120, seed=i))
    index_dir = tmp_path / "idx"
    # ViT-B-32 (random weights) embeds 20-40 images/s on these machines and commits every 0.5 s, so
    # Ctrl-C lands mid-run whatever the machine's speed. The child gets Python's own SIGINT
    # handler, as a program started from a terminal has: a suite started in the background
    # inherits SIGINT ignored, and Python then installs none (the run finished with exit 0).
    child = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); " \
            "from searchlib.cli.main import run; run()"
    cmd = [sys.executable, "-c", child, "--index", str(index_dir), "index",
           str(folder), "--model", "ViT-B-32/random", "--device", "cpu", "--workers", "2", "--batch-size", "16",
           "--commit-seconds", "0.5", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[1])

    def rows() -> int:
        try:
            with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
                return db.execute("select count(*) from images").fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while rows() == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    committed = rows()
    assert 0 < committed < 500, "the first commit should land mid-run"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "searchlib: interrupted; work committed so far is kept"
    assert rows() >= committed
    again = index_folder(index_dir, folder, device="cpu", workers=1)
    assert again.failed == 0 and again.added + again.unchanged == 500 and again.unchanged >= committed


# -- end to end ----------------------------------------------------------------------------------
def _mixed_folder(folder: Path) -> None:
    folder.mkdir()
    for i in range(14):
        (folder / f"plain_{i:02d}.jpg").write_bytes(smooth_jpeg(80, 60, seed=i, orientation=(i % 8) + 1))
    (folder / "progressive.jpg").write_bytes(smooth_jpeg(80, 60, seed=50, progressive=True))
    (folder / "cmyk.jpg").write_bytes(smooth_jpeg(80, 60, seed=51, mode="CMYK"))
    (folder / "gray.jpg").write_bytes(smooth_jpeg(80, 60, seed=52, mode="L"))
    Image.open(io.BytesIO(smooth_jpeg(80, 60, seed=53))).save(folder / "photo.png")
    (folder / "truncated.jpg").write_bytes(smooth_jpeg(80, 60, seed=54)[:300])


def _vectors_by_name(index_dir: Path) -> dict[str, np.ndarray]:
    from searchlib import open_index

    index = open_index(index_dir)
    try:
        _, ids, vectors = index.catalog.snapshot_vectors()
        rows = index.catalog.images([int(i) for i in ids])
        return {os.path.basename(rows[int(i)].path): v for i, v in zip(ids, vectors)}
    finally:
        index.close()


@pytest.mark.parametrize("mode", ["device", "split"])
def test_indexing_with_the_device_decoder_matches_the_workers(tmp_path, mode):
    folder = tmp_path / "photos"
    _mixed_folder(folder)
    reference = index_folder(tmp_path / "ref", folder, model=TINY, device="cpu", workers=1, jpeg_decoder="cpu")
    report = index_folder(tmp_path / mode, folder, model=TINY, device="cpu", workers=1, jpeg_decoder=mode)
    assert reference.device_decoded == 0 and report.device_decoded > 0
    assert report.added == reference.added == 18
    assert [f["path"] for f in report.failures] == [f["path"] for f in reference.failures]
    assert report.failures[0]["path"].endswith("truncated.jpg")
    ref, got = _vectors_by_name(tmp_path / "ref"), _vectors_by_name(tmp_path / mode)
    assert set(ref) == set(got)
    cosines = [float(ref[name] @ got[name]) for name in ref]
    assert min(cosines) > 0.999, sorted(zip(cosines, ref))[:3]
    if mode == "device":  # the 14 plain and the gray one; progressive, CMYK, truncated stay on the CPU
        assert report.device_decoded == 15


def test_cli_jpeg_decoder_option(tmp_path):
    import json

    from click.testing import CliRunner

    from searchlib.cli.main import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(smooth_jpeg(64, 48, seed=i))
    args = ["--index", str(tmp_path / "i"), "index", str(folder), "--model", TINY, "--device", "cpu",
            "--workers", "0", "--json"]
    result = CliRunner().invoke(main, args + ["--jpeg-decoder", "device"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["device_decoded"] == 3
    bad = CliRunner().invoke(main, args + ["--jpeg-decoder", "gpu"])
    assert bad.exit_code == 2 and "--jpeg-decoder" in bad.output
