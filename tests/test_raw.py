"""Camera RAW files: DNGs made from Bayer arrays are decoded (preview or half-size demosaic,
oriented), carry their metadata, are found by what they show, pair with their JPEGs, and bad ones
are reported with reasons."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from searchlib import open_index
from searchlib.errors import ImageDecodeError
from searchlib.imaging import Preprocess, to_model_pixels
from searchlib.indexer import index_folder
from searchlib.media import decode_file_bytes, file_metadata, siblings_of, skipped_raws
from searchlib.media.extent import truncated
from searchlib.media.raw import read_raw
from searchlib.models import BUNDLED_WEIGHTS
from searchlib.thumbnails import make_thumbnail
from tests.conftest import TINY
from tests.rawfiles import gps_exif, write_dng

PREP = Preprocess(64)

# PIL transposes that show a picture as the EXIF orientation says (computed here independently).
_SHOW = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}


def scene(size=(320, 240)) -> Image.Image:
    """A picture that looks different in every orientation: a blue block top left, a red disc right."""
    img = Image.new("RGB", size, (40, 140, 40))
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.rectangle((0, 0, w // 4, h // 4), fill=(20, 40, 230))
    draw.ellipse((w // 2, h // 4, w // 2 + h // 2, 3 * h // 4), fill=(230, 30, 30))
    return img


def expected_pixels(img: Image.Image, orientation: int) -> np.ndarray:
    shown = img.transpose(_SHOW[orientation]) if _SHOW[orientation] else img
    return to_model_pixels(shown, PREP).astype(np.float64)


def agreement(pixels: np.ndarray, img: Image.Image, orientation: int) -> float:
    """The share of pixels whose dominant colour (red, green or blue) is the expected one: robust to
    the sensor's colour rendering, which shifts the exact values."""
    return float((pixels.argmax(axis=2) == expected_pixels(img, orientation).argmax(axis=2)).mean())


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("preview", ["jpeg", "bitmap", "small", None])
def test_pixels_come_oriented_from_the_preview_or_a_half_size_demosaic(tmp_path, orientation, preview):
    img = scene()
    small = img.resize((80, 60))  # short side 60 < the model's 64: not used
    shown = {"jpeg": img, "bitmap": img, "small": small, None: None}[preview]
    path = write_dng(tmp_path / "x.dng", img, preview=shown, orientation=orientation,
                     preview_format="bitmap" if preview == "bitmap" else "jpeg")
    data = path.read_bytes()
    picture = read_raw(data, PREP.image_size, 10**8, ".dng")
    assert picture.source == ("preview" if preview in ("jpeg", "bitmap") else "demosaic")
    pixels, meta = decode_file_bytes(str(path), data, PREP)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    # Right way up, and clearly not any other way.
    right = agreement(pixels, img, orientation)
    wrong = max(agreement(pixels, img, o) for o in _SHOW if o != orientation)
    assert right > 0.95 and wrong < 0.85, (right, wrong)
    assert meta.orientation == orientation and meta.format == "DNG"
    assert (meta.width, meta.height) == ((240, 320) if orientation in (6, 8) else (320, 240))


def test_metadata_from_the_container_and_the_preview_exif(tmp_path):
    path = write_dng(tmp_path / "m.dng", scene(), preview=scene(), preview_exif=gps_exif(-33.8568, 151.2153),
                     make="Nikon", model="Z 9", taken="2023:11:12 13:14:15")
    meta = file_metadata(str(path), path.read_bytes())
    assert (meta.camera_make, meta.camera_model) == ("Nikon", "Z 9")
    assert meta.taken_at.isoformat() == "2023-11-12T13:14:15"
    assert meta.gps_lat == pytest.approx(-33.8568, abs=1e-4) and meta.gps_lon == pytest.approx(151.2153, abs=1e-4)
    bare = write_dng(tmp_path / "n.dng", scene(), taken=None)
    meta = file_metadata(str(bare), bare.read_bytes())
    assert meta.taken_at is None and meta.gps_lat is None and meta.camera_make == "Acme"


def test_thumbnail_from_the_preview_oriented(tmp_path):
    img = scene((400, 300))
    path = write_dng(tmp_path / "t.dng", img, preview=img, orientation=6)
    thumb = Image.open(io.BytesIO(make_thumbnail(path.read_bytes(), 128, name=str(path))))
    assert thumb.format == "JPEG" and thumb.size == (96, 128)  # portrait: turned by the orientation
    # The blue block (top left of the sensor) is top right once turned clockwise.
    r, g, b = thumb.getpixel((90, 5))
    assert b > 150 and r < 100
    # Larger than the preview: demosaiced at half size (200x150, turned), fitted.
    big = Image.open(io.BytesIO(make_thumbnail(path.read_bytes(), 1024, name=str(path))))
    assert big.size == (150, 200)


def bad_files(folder: Path) -> dict[str, str]:
    """Bad RAW files and the words their failure reasons must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_dng(folder / "good.dng", scene(), preview=scene()).read_bytes()
    (folder / "cut.dng").write_bytes(good[:len(good) // 2])  # the preview survives, the sensor data does not
    (folder / "text.nef").write_text("not a raw file\n" * 20)
    (folder / "empty.cr2").write_bytes(b"")
    buf = io.BytesIO()
    scene().save(buf, "JPEG")
    (folder / "jpeg.arw").write_bytes(buf.getvalue())
    (folder / "noise.orf").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return {"cut.dng": "truncated", "text.nef": "not a RAW file", "empty.cr2": "empty",
            "jpeg.arw": "not a RAW file", "noise.orf": "not a RAW file"}


def test_bad_raw_files_are_failures_with_reasons(tmp_path):
    expected = bad_files(tmp_path / "photos")
    report = index_folder(tmp_path / "idx", tmp_path / "photos", model=TINY, device="cpu", workers=1)
    assert report.added == 1 and report.failed == len(expected)
    reasons = {os.path.basename(f["path"]): f["error"] for f in report.failures}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name] and "\n" not in reasons[name], (name, reasons[name])
    with open_index(tmp_path / "idx") as index:
        assert [os.path.basename(row["path"]) for row in index.images()] == ["good.dng"]


def test_cli_reports_bad_raws_in_one_line_each_and_no_libraw_noise(tmp_path):
    expected = bad_files(tmp_path / "photos")
    cli = "import sys; sys.argv[0] = 'searchlib'; from searchlib.cli.main import run; run()"
    result = subprocess.run([sys.executable, "-c", cli, "--index", str(tmp_path / "idx"), "index",
                             str(tmp_path / "photos"), "--model", TINY, "--device", "cpu", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 1 and report["failed"] == len(expected)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all("Traceback" not in line for line in lines)
    # Only searchlib's own failure lines: nothing LibRaw printed itself.
    assert all(line.startswith("searchlib") or any(n in line for n in expected) for line in lines), lines


def test_libraw_stderr_goes_to_the_debug_log_not_the_terminal(tmp_path):
    code = ("import logging, os, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)\n"
            "from searchlib.media.raw import quiet_stderr\n"
            "with quiet_stderr():\n    os.write(2, b'data corrupted at 1234\\n')\n"
            "os.write(2, b'after\\n')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr == "after\n" and "data corrupted at 1234" in result.stdout


def make_pairs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, color in (("IMG_0001", (220, 30, 30)), ("IMG_0002", (30, 30, 220))):
        img = Image.new("RGB", (160, 120), color)
        img.save(folder / f"{stem}.JPG", quality=90)
        write_dng(folder / f"{stem}.DNG", img, preview=img)
    write_dng(folder / "alone.dng", scene())
    scene().save(folder / "plain.jpg")


def test_pairs_are_indexed_once_and_the_raw_is_the_jpegs_sibling(tmp_path):
    photos = tmp_path / "photos"
    make_pairs(photos)
    report = index_folder(tmp_path / "idx", photos, model=TINY, device="cpu", workers=0)
    assert report.added == 4 and report.failed == 0
    with open_index(tmp_path / "idx") as index:
        names = sorted(os.path.basename(r["path"]) for r in index.images())
        assert names == ["IMG_0001.JPG", "IMG_0002.JPG", "alone.dng", "plain.jpg"]
        hits = {os.path.basename(h.path): h for h in index.search("a photo", k=10)}
    assert [os.path.basename(s) for s in hits["IMG_0001.JPG"].siblings] == ["IMG_0001.DNG"]
    assert hits["IMG_0001.JPG"].to_dict()["siblings"] == [str(photos / "IMG_0001.DNG")]
    assert hits["alone.dng"].siblings == () and hits["plain.jpg"].to_dict()["siblings"] == []

    report = index_folder(tmp_path / "idx", photos, model=TINY, device="cpu", workers=0, raw_pairs="both")
    assert report.added == 2 and report.unchanged == 4
    with open_index(tmp_path / "idx") as index:
        hits = {os.path.basename(h.path): h for h in index.search("a photo", k=10)}
    assert [os.path.basename(s) for s in hits["IMG_0002.DNG"].siblings] == ["IMG_0002.JPG"]

    report = index_folder(tmp_path / "idx", photos, model=TINY, device="cpu", workers=0)
    assert report.removed == 2  # back to the default: the paired RAWs leave the index


def test_cli_search_shows_siblings(tmp_path):
    from click.testing import CliRunner

    from searchlib.cli.main import main

    photos = tmp_path / "photos"
    make_pairs(photos)
    runner = CliRunner()
    base = ["--index", str(tmp_path / "idx")]
    result = runner.invoke(main, base + ["index", str(photos), "--model", TINY, "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, base + ["search", "a photo", "-k", "10", "--json"])
    hits = {os.path.basename(h["path"]): h for h in json.loads(result.stdout)}
    assert hits["IMG_0002.JPG"]["siblings"] == [str(photos / "IMG_0002.DNG")]
    result = runner.invoke(main, base + ["search", "a photo", "-k", "10"])
    assert "IMG_0001.JPG (+ IMG_0001.DNG)" in result.stdout
    bad = runner.invoke(main, base + ["index", str(photos), "--raw-pairs", "raw"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_pair_rule():
    names = ["a.CR2", "a.jpg", "b.nef", "b.png", "c.arw", "c.HEIC", "d.dng", "D.JPG", "e.raf"]
    assert skipped_raws(names) == {"a.CR2", "c.arw"}  # same stem, exact case; a PNG is no pair
    assert skipped_raws(names, "both") == set()


def test_siblings_of_a_folder_that_is_gone(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    (tmp_path / "x.nef").write_bytes(b"")
    assert siblings_of([str(tmp_path / "x.jpg"), str(tmp_path / "gone" / "y.jpg")]) == {
        str(tmp_path / "x.jpg"): [str(tmp_path / "x.nef")]}


def test_an_excluded_jpeg_leaves_its_raw_indexed(tmp_path):
    photos = tmp_path / "photos"
    make_pairs(photos)
    report = index_folder(tmp_path / "idx", photos, model=TINY, device="cpu", workers=0, exclude=("*.JPG",))
    with open_index(tmp_path / "idx") as index:
        names = sorted(os.path.basename(r["path"]) for r in index.images())
    assert report.failed == 0 and names == ["IMG_0001.DNG", "IMG_0002.DNG", "alone.dng", "plain.jpg"]


def test_truncation_is_read_from_each_container_kind():
    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    cr3 = box(b"ftyp", b"crx " + bytes(12)) + box(b"moov", bytes(100)) + box(b"mdat", bytes(5000))
    assert truncated(cr3) is None and "mdat" in truncated(cr3[:-10])
    raf = bytearray(b"FUJIFILMCCD-RAW 0201FF383501".ljust(200, b"\0"))
    raf[100:108] = (200).to_bytes(4, "big") + (1000).to_bytes(4, "big")
    raf = bytes(raf) + bytes(1000)
    assert truncated(raf) is None and truncated(raf[:900]) is not None
    assert truncated(b"plain bytes") is None


def test_decode_workers_run_one_openmp_thread(tmp_path):
    from searchlib.indexer.pipeline import decode_stream
    from searchlib.indexer.scan import FileEntry
    from tests.helpers import environment_probe

    (tmp_path / "a.jpg").write_bytes(b"x")
    entry = FileEntry(str(tmp_path / "a.jpg"), 1, 0)
    (result,) = decode_stream([entry], PREP, workers=1, worker=environment_probe)
    assert result.error == "OMP_NUM_THREADS=1"


@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")
def test_raws_are_found_by_what_they_show(tmp_path):
    from searchlib.synthetic import make_sample

    rng = random.Random(7)
    photos = tmp_path / "photos"
    photos.mkdir()
    wanted = {}
    for i, (shape, color, preview) in enumerate([("circle", "red", False), ("star", "blue", True),
                                                 ("sun", "yellow", False), ("tree", "green", True)]):
        img = make_sample(rng, 160, shape=shape, color=color, count=1, artefacts=False).image
        write_dng(photos / f"raw_{i}.dng", img.resize((320, 320)), preview=img if preview else None, orientation=1)
        wanted[f"a {color} {shape}"] = f"raw_{i}.dng"
    for i in range(16):  # other pictures, as JPEGs
        make_sample(rng, 160).image.save(photos / f"other_{i:02d}.jpg", quality=90)
    report = index_folder(tmp_path / "idx", photos, model="bundled", device="cpu", workers=1)
    assert report.failed == 0 and report.added == 20
    with open_index(tmp_path / "idx") as index:
        found = {q: [os.path.basename(h.path) for h in index.search(q, k=3)] for q in wanted}
    assert sum(wanted[q] in found[q] for q in wanted) >= 3, found


def test_not_a_raw_is_refused_cleanly():
    with pytest.raises(ImageDecodeError, match="not a RAW file"):
        decode_file_bytes("x.nef", b"GIF89a" + bytes(100), PREP)


def test_api_hits_carry_siblings_and_raw_thumbnails_come_from_the_preview(tmp_path):
    from fastapi.testclient import TestClient

    from searchlib.web import create_app

    photos = tmp_path / "photos"
    make_pairs(photos)
    index_folder(tmp_path / "idx", photos, model=TINY, device="cpu", workers=0)
    with TestClient(create_app(tmp_path / "idx", device="cpu"), base_url="http://localhost") as client:
        r = client.get("/api/v1/search", params={"q": "a photo", "k": 10})
        assert r.status_code == 200
        hits = {os.path.basename(h["path"]): h for h in r.json()["hits"]}
        assert hits["IMG_0001.JPG"]["siblings"] == [str(photos / "IMG_0001.DNG")]
        r = client.get(hits["alone.dng"]["thumbnail_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        # alone.dng has no preview: a half-size demosaic (160x120) fitted into 256 keeps its size.
        assert Image.open(io.BytesIO(r.content)).size == (160, 120)


def test_a_raw_file_not_indexed_works_as_a_query_image(tmp_path):
    photos = tmp_path / "photos"
    make_pairs(photos)
    index_folder(tmp_path / "idx", photos, model=TINY, device="cpu", workers=0)
    # Other bytes (another date), the same picture as alone.dng: embedded now, through LibRaw.
    query = write_dng(tmp_path / "query.dng", scene(), taken="2000:01:01 00:00:00")
    with open_index(tmp_path / "idx") as index:
        hits = index.search(query, k=1)
    assert os.path.basename(hits[0].path) == "alone.dng" and hits[0].score > 0.999


def test_a_damaged_preview_falls_back_to_the_sensor_data(tmp_path):
    path = write_dng(tmp_path / "d.dng", scene(), preview=scene())
    data = bytearray(path.read_bytes())
    table = data.index(b"\xff\xc4")  # the preview JPEG's Huffman table: garbage, undecodable
    data[table + 5:table + 21] = b"\xff" * 16
    picture = read_raw(bytes(data), PREP.image_size, 10**8, ".dng")
    assert picture.source == "demosaic" and picture.image.size == (160, 120)
    pixels, _ = decode_file_bytes("d.dng", bytes(data), PREP)
    assert agreement(pixels, scene(), 1) > 0.95
