"""Bad and unusual files: each reported with a reason or indexed, never fatal, never hanging."""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from searchlib import open_index
from searchlib.errors import ImageDecodeError
from searchlib.imaging import Preprocess
from searchlib.indexer import index_folder
from searchlib.indexer.pipeline import Decoded, Failed, decode_stream
from searchlib.indexer.scan import FileEntry
from tests.conftest import TINY, make_exif, write_images
from tests.helpers_cli import cli, png_claiming


def _png_header_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + chunk(b"IEND", b""))


def _valid_odd_images(folder):
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    Image.fromarray((rng.integers(0, 65535, (40, 40))).astype(np.uint16)).save(folder / "sixteen.png")
    rgb.convert("L").save(folder / "gray.jpg")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(folder / "palette.png", transparency=0)
    frames = [Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    rgb.save(folder / "rotated.jpg", exif=make_exif(orientation=6))
    rgb.save(folder / "actually_png.jpg", "PNG")  # content decides the format
    rgb.save(folder / ("long_" + "x" * 230 + ".jpg"))
    return {"cmyk.jpg", "sixteen.png", "gray.jpg", "palette.png", "anim.gif", "rotated.jpg",
            "actually_png.jpg", "long_" + "x" * 230 + ".jpg"}


def _bad_files(folder):
    good = BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good, "JPEG")
    png = BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(png, "PNG")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (folder / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    broken = bytearray(good.getvalue())
    dht = broken.index(b"\xff\xc4")
    broken[dht + 5:dht + 21] = b"\xff" * 16  # a corrupt Huffman table: the header reads fine
    (folder / "bad_huffman.jpg").write_bytes(bytes(broken))
    (folder / "random.jpg").write_bytes(os.urandom(5000))
    (folder / "text.png").write_text("just some text\n" * 20)
    (folder / "page.jpg").write_text("<!doctype html><html><body>not a photo</body></html>")
    (folder / "bomb.png").write_bytes(_png_header_claiming(100_000, 100_000))
    (folder / "broken_link.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    os.mkfifo(folder / "fifo.jpg")
    return {"zero.jpg": "empty", "truncated.jpg": "", "truncated.png": "", "bad_huffman.jpg": "broken data stream",
            "random.jpg": "not a readable image",
            "text.png": "not a readable image", "page.jpg": "not a readable image", "bomb.png": "too large",
            "broken_link.jpg": "broken symbolic link", "loop_a.jpg": "", "loop_b.jpg": "",
            "fifo.jpg": "not a regular file"}


def test_every_bad_kind_is_reported_and_every_valid_kind_indexed(tmp_path):
    folder = tmp_path / "mess"
    write_images(folder, 4)
    valid = _valid_odd_images(folder)
    bad = _bad_files(folder)
    (folder / "dir.jpg").mkdir()  # a directory named like an image
    write_images(folder / "dir.jpg", 1, seed=3)
    (folder / ".hidden.jpg").write_bytes((folder / "gray.jpg").read_bytes())
    (folder / "._resource.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    report = index_folder(tmp_path / "idx", folder, model=TINY, device="cpu", workers=1, max_megapixels=50)
    failures = {os.path.basename(f["path"]): f["error"] for f in report.failures}
    assert set(failures) == set(bad), failures
    for name, reason in bad.items():
        assert reason in failures[name], (name, failures[name])
    assert report.failed == len(bad)
    with open_index(tmp_path / "idx") as index:
        names = {os.path.basename(im["path"]) for im in index.images()}
    assert valid <= names
    assert ".hidden.jpg" not in names and "._resource.jpg" not in names
    assert report.added == 4 + len(valid) + 1  # + the image inside dir.jpg/
    rotated = next(im for im in open_index(tmp_path / "idx").images() if im["path"].endswith("rotated.jpg"))
    assert (rotated["width"], rotated["height"], rotated["orientation"]) == (50, 70, 6)


def test_hidden_files_with_include_hidden(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 2)
    write_images(folder / ".secret", 1, seed=4)
    (folder / ".dot.png").write_bytes((folder / "img_0_001.png").read_bytes())
    r1 = index_folder(tmp_path / "i1", folder, model=TINY, device="cpu", workers=0)
    r2 = index_folder(tmp_path / "i2", folder, model=TINY, device="cpu", workers=0, include_hidden=True)
    assert (r1.added, r2.added) == (2, 4)


def test_exclude_globs(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 4)
    write_images(folder / "raw", 2, seed=2)
    report = index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0,
                          exclude=["*.png", str(folder / "raw")])
    assert report.added == 2


def test_non_utf8_file_name_is_indexed_and_searchable(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 2)
    raw = os.fsencode(str(folder)) + b"/caf\xe9_\xff.jpg"
    with open(raw, "wb") as handle:
        handle.write((folder / "img_0_000.jpg").read_bytes()[:-2] + b"\xff\xd9")
    report = index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    assert report.failed == 0 and report.added == 3
    with open_index(tmp_path / "i") as index:
        paths = [im["path"] for im in index.images()]
        assert os.fsdecode(raw) in paths
        assert os.path.exists(os.fsdecode(raw))
    again = index_folder(tmp_path / "i", folder, device="cpu", workers=0)
    assert again.unchanged == 3 and again.added == 0
    from click.testing import CliRunner

    from searchlib.cli.main import main

    index_arg = ["--index", str(tmp_path / "i")]
    for args in (["list"], ["search", "x"]):  # tables show the bad bytes as escapes
        result = CliRunner().invoke(main, index_arg + args)
        assert result.exit_code == 0, result.output
        assert "caf\\xe9_\\xff.jpg" in result.stdout_bytes.decode("utf-8")
    for args in (["list", "--json"], ["search", "x", "--json"]):  # JSON: valid UTF-8, bytes recoverable
        result = CliRunner().invoke(main, index_arg + args)
        items = json.loads(result.stdout_bytes.decode("utf-8", "strict"))
        (bad,) = [it for it in items if "path_bytes" in it]
        assert base64.b64decode(bad["path_bytes"]) == raw and bad["path"].endswith("caf\ufffd_\ufffd.jpg")
        assert all("path_bytes" not in it for it in items if it is not bad)
    result = CliRunner().invoke(main, index_arg + ["list", "--paths", "-0"])
    assert raw in result.stdout_bytes.split(b"\0")
    folder_hits = CliRunner().invoke(main, index_arg + ["search", "x", "--in", str(folder), "--paths"])
    assert raw in folder_hits.stdout_bytes.split(b"\n")  # filters include such files


def test_symlinks_followed_only_when_asked(tmp_path):
    real = tmp_path / "real"
    write_images(real, 2)
    folder = tmp_path / "p"
    write_images(folder, 1, seed=1)
    (folder / "linkdir").symlink_to(real)
    (folder / "self").symlink_to(folder)  # a directory loop
    r1 = index_folder(tmp_path / "i1", folder, model=TINY, device="cpu", workers=0)
    r2 = index_folder(tmp_path / "i2", folder, model=TINY, device="cpu", workers=0, follow_symlinks=True)
    assert r1.added == 1 and r2.added == 3


def test_a_hanging_decoder_costs_one_file(tmp_path):
    folder = tmp_path / "p"
    paths = write_images(folder, 6)
    hang = folder / "hang.jpg"
    hang.write_bytes(paths[0].read_bytes())
    entries = [FileEntry(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())]
    from tests.helpers import hanging_decode

    results = list(decode_stream(entries, Preprocess(32), workers=2, timeout=3.0, worker=hanging_decode))
    failed = [r for r in results if isinstance(r, Failed)]
    assert [os.path.basename(f.path) for f in failed] == ["hang.jpg"] and "longer than 3s" in failed[0].error
    assert sum(isinstance(r, Decoded) for r in results) == 6


def test_heic_without_extra_is_a_clear_message(tmp_path):
    try:
        import pillow_heif  # noqa: F401

        pytest.skip("pillow-heif is installed")
    except ImportError:
        pass
    fake = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    from searchlib.errors import ImageDecodeError
    from searchlib.imaging import open_image

    with pytest.raises(ImageDecodeError, match=r"searchlib\[heic\]"):
        open_image(fake)


def test_cli_prints_failures_on_stderr_and_json(tmp_path):
    from click.testing import CliRunner

    from searchlib.cli.main import main

    folder = tmp_path / "p"
    write_images(folder, 2)
    (folder / "bad.jpg").write_text("nope")
    result = CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "index", str(folder), "--model", TINY,
                                       "--device", "cpu", "--workers", "0", "--json"])
    assert result.exit_code == 0
    assert "bad.jpg" in result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == 1 and report["failures"][0]["path"].endswith("bad.jpg")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads any file")
def test_unreadable_file(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 2)
    locked = folder / "img_0_000.jpg"
    locked.chmod(0)
    report = index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    assert report.failed == 1 and "cannot read" in report.failures[0]["error"]
    assert sys.platform  # keep flake quiet


def test_file_vanishing_between_scan_and_decode(tmp_path):
    folder = tmp_path / "p"
    paths = write_images(folder, 3)
    entries = [FileEntry(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    paths[1].unlink()
    results = list(decode_stream(entries, Preprocess(32), workers=0))
    failed = [r for r in results if isinstance(r, Failed)]
    assert len(failed) == 1 and "cannot read" in failed[0].error and failed[0].path == str(paths[1])


def test_file_changing_between_scan_and_decode_is_stored_as_read(tmp_path):
    folder = tmp_path / "p"
    paths = write_images(folder, 2)
    entry = FileEntry(str(paths[0]), paths[0].stat().st_size, paths[0].stat().st_mtime_ns)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(paths[0], "JPEG")  # rewritten after the scan
    (result,) = decode_stream([entry], Preprocess(32), workers=0)
    assert isinstance(result, Decoded) and result.size == paths[0].stat().st_size != entry.size
    assert result.metadata.width == 10


def test_an_unchanged_bad_file_is_not_retried_and_the_model_not_loaded(tmp_path, monkeypatch):
    folder = tmp_path / "p"
    write_images(folder, 2)
    (folder / "bad.jpg").write_bytes(b"not an image at all")
    first = index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    assert first.failed == 1
    from searchlib import embedding

    loads = []
    monkeypatch.setattr(embedding.Embedder, "_load", lambda self: loads.append(1) or (_ for _ in ()).throw(
        AssertionError("the model was loaded")))
    second = index_folder(tmp_path / "i", folder, device="cpu", workers=0)
    assert (second.failed, second.failed_before, second.unchanged) == (0, 1, 2) and not loads
    monkeypatch.undo()
    third = index_folder(tmp_path / "i", folder, device="cpu", workers=0, retry_failed=True)
    assert third.failed == 1
    (folder / "bad.jpg").unlink()
    write_images(folder, 1, seed=4)[0].rename(folder / "bad.jpg")  # fixed: an image now
    fourth = index_folder(tmp_path / "i", folder, device="cpu", workers=0)
    assert (fourth.added, fourth.failed, fourth.failed_before) == (1, 0, 0)


def test_search_image_classify_and_embed_images_refuse_bombs(small, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(20000, 20000, bit_depth=16))
    result = cli("search", "--image", bomb, index=small / "i")
    assert result.exit_code == 1 and "too large" in result.stderr
    result = cli("classify", bomb, "--labels", "a,b", index=small / "i")
    assert result.exit_code == 1 and "too large" in result.stderr
    import searchlib

    with pytest.raises(ImageDecodeError, match="too large"):
        searchlib.embed_images([bomb.read_bytes()], model=TINY, device="cpu")


def test_the_pixel_limit_counts_bytes_per_pixel(tmp_path):
    from searchlib.imaging import check_decoded_size

    check_decoded_size(10000, 10000, "RGB", 100_000_000)  # 100 MP RGB: allowed
    with pytest.raises(ImageDecodeError, match="too large"):
        check_decoded_size(9000, 9000, "F", 100_000_000)  # 81 MP but 324 MB as float


def test_a_file_inside_a_given_folder_and_a_file_given_twice_are_indexed_once(tmp_path):
    files = write_images(tmp_path / "p", 3)
    report = index_folder(tmp_path / "i", tmp_path / "p", files[0], files[0], model=TINY, device="cpu", workers=0)
    assert (report.added, report.failed) == (3, 0)
    again = index_folder(tmp_path / "i", tmp_path / "p", files[1], device="cpu", workers=0)
    assert (again.unchanged, again.added) == (3, 0)
