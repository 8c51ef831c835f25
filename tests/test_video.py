"""Videos searched scene by scene: MP4s generated with PyAV from known coloured-shape scenes are cut
into segments inside each scene, found by what each scene shows with a time range inside it, fold
into one hit per video, filter by media, list once, change and disappear together; bad videos are
failures with reasons; the file is served with Range requests."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from searchlib import Filters, open_index
from searchlib.cli.main import main
from searchlib.errors import ImageDecodeError
from searchlib.imaging import Preprocess
from searchlib.indexer import index_folder
from searchlib.media.video import decode_video
from searchlib.models import BUNDLED_WEIGHTS
from tests.test_serve_browser import browser  # noqa: F401  (the Chromium fixture)
from tests.videofiles import THREE_SCENES, scene_picture, three_scene_video, write_video

PREP = Preprocess(64)
bundled = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")


def inside(segment_start: float, segment_end: float, scene_start: float, scene_end: float, slack: float = 0.5):
    return scene_start - slack <= segment_start and segment_end <= scene_end + slack


def test_each_scene_becomes_segments_inside_it(tmp_path):
    path, truth = three_scene_video(tmp_path / "clip.mp4")
    video = decode_video(str(path), path.name, PREP)
    assert video.metadata.format == "MP4" and (video.metadata.width, video.metadata.height) == (128, 128)
    assert [s.part for s in video.segments] == list(range(len(video.segments)))
    assert video.pixels.shape == (len(video.segments), 64, 64, 3)
    # Every segment lies inside one scene, and every scene has a segment.
    for seg in video.segments:
        assert sum(inside(seg.start, seg.end, s, e) for _, _, s, e in truth) == 1, seg
    for _, _, s, e in truth:
        assert any(inside(seg.start, seg.end, s, e) for seg in video.segments)
    assert video.segments[0].start == 0 and video.segments[-1].end == pytest.approx(12, abs=0.5)
    assert all(seg.duration == pytest.approx(12, abs=0.5) for seg in video.segments)


def test_a_static_video_is_one_segment_and_a_long_scene_is_seen_every_few_seconds(tmp_path):
    still = write_video(tmp_path / "still.mp4", [(scene_picture("red", "circle", 3), 25.0)], fps=4)
    assert len(decode_video(str(still), "still.mp4", PREP).segments) == 1
    # A slow change (a drifting brightness) never makes a cut, yet is seen at least every 10 s.
    base = np.asarray(scene_picture("blue", "star", 4), dtype=np.float32)
    from PIL import Image
    frames = [(Image.fromarray(np.clip(base * (0.4 + 0.6 * i / 24), 0, 255).astype(np.uint8)), 1.0)
              for i in range(25)]
    drifting = write_video(tmp_path / "drift.mp4", frames, fps=4, jitter=False)
    segments = decode_video(str(drifting), "drift.mp4", PREP).segments
    assert len(segments) >= 3 and all(s.end - s.start <= 10.0 + 1e-6 for s in segments)


def test_a_long_or_large_video_is_read_by_its_keyframes(tmp_path, monkeypatch):
    from searchlib.media import video as video_mod

    path, truth = three_scene_video(tmp_path / "clip.mp4")
    assert not video_mod.keyframes_only_for(128, 128, 12.0)
    assert video_mod.keyframes_only_for(1920, 1080, 60.0) and video_mod.keyframes_only_for(64, 64, 601.0)
    decoded = []
    real_hsv = video_mod._hsv
    monkeypatch.setattr(video_mod, "_hsv", lambda img: decoded.append(1) or real_hsv(img))
    full = decode_video(str(path), path.name, PREP)
    samples_full, decoded[:] = len(decoded), []
    monkeypatch.setattr(video_mod, "FULL_DECODE_PIXEL_SECONDS", 1.0)
    keyed = decode_video(str(path), path.name, PREP)
    assert len(decoded) < samples_full
    # Every scene still has a segment whose middle lies inside it.
    for _, _, start, end in truth:
        assert any(start <= (s.start + s.end) / 2 <= end for s in keyed.segments), keyed.segments
    assert len(full.segments) >= 3


@pytest.mark.parametrize("content, reason", [
    (b"", "no video stream|not a readable video|empty"),
    (b"just some words, not a video\n" * 40, "not a readable video|no video stream"),
])
def test_bad_bytes_are_decode_errors(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError) as e:
        decode_video(str(path), path.name, PREP)
    assert re.search(reason, str(e.value)) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def video_index(tmp_path_factory):
    """A folder with a three-scene video and two photos (a red circle, a blue star) indexed with
    the bundled model."""
    if not BUNDLED_WEIGHTS.is_file():
        pytest.skip("bundled weights not built")
    root = tmp_path_factory.mktemp("video")
    photos = root / "photos"
    photos.mkdir()
    _, truth = three_scene_video(photos / "clip.mp4")
    scene_picture("red", "circle", 11).save(photos / "red.png")
    scene_picture("blue", "star", 12).save(photos / "blue.png")
    (photos / "text.mp4").write_text("this is not a video\n")
    (photos / "empty.mov").write_bytes(b"")
    cut = (photos / "clip.mp4").read_bytes()
    (photos / "cut.mkv").write_bytes(cut[: len(cut) // 40])
    report = index_folder(root / "index", photos, model="bundled", device="cpu", workers=0)
    return root, photos, truth, report


@bundled
def test_bad_videos_are_failures_with_reasons(video_index):
    _, photos, _, report = video_index
    failed = {f["path"]: f["error"] for f in report.failures}
    assert set(failed) == {str(photos / n) for n in ("text.mp4", "empty.mov", "cut.mkv")}, failed
    assert "empty" in failed[str(photos / "empty.mov")]
    assert all(reason and "\n" not in reason for reason in failed.values())
    assert report.added == 3  # files: the video counts once


@bundled
def test_each_scene_is_found_with_a_time_range_inside_it(video_index):
    root, photos, truth, _ = video_index
    with open_index(root / "index") as index:
        for color, shape, start, end in truth:
            hits = index.search(f"a {color} {shape}", k=5, filters=Filters(media="video"), all_segments=True)
            best = hits[0].to_dict()
            assert best["media"] == "video" and best["path"] == str(photos / "clip.mp4")
            assert inside(best["start"], best["end"], start, end), (color, shape, best)
            assert best["duration"] == pytest.approx(12, abs=0.5)


@bundled
def test_a_video_is_one_hit_with_its_other_segments_folded_in(video_index):
    root, photos, _, _ = video_index
    with open_index(root / "index") as index:
        every = index.search("a red circle", k=20, all_segments=True)
        folded = index.search("a red circle", k=20)
    video_rows = [h for h in every if h.path.endswith("clip.mp4")]
    assert len(video_rows) >= 3
    one = [h for h in folded if h.path.endswith("clip.mp4")]
    assert len(one) == 1 and one[0].id == video_rows[0].id
    # The folded hit carries exactly the video's other segments, ordered by start time.
    others = sorted(video_rows[1:], key=lambda h: h.metadata["start"])
    assert [s["id"] for s in one[0].to_dict()["segments"]] == [h.id for h in others]
    assert {h.path for h in folded} == {h.path for h in every}
    images = index_images_only(root)
    assert all(h.to_dict()["media"] == "image" for h in images) and len(images) == 2


def index_images_only(root: Path):
    with open_index(root / "index") as index:
        return index.search("a red circle", k=20, filters=Filters(media="image"))


@bundled
def test_cli_shows_the_time_range_and_list_shows_a_video_once(video_index):
    root, photos, truth, _ = video_index
    runner = CliRunner()
    out = runner.invoke(main, ["--index", str(root / "index"), "search", "a green tree", "--media", "video",
                               "-k", "1"])
    assert out.exit_code == 0, out.output
    shown = re.search(r"clip\.mp4 @ (\d+):(\d\d)–(\d+):(\d\d)", out.output)
    assert shown, out.output
    m1, s1, m2, s2 = map(int, shown.groups())
    _, _, start, end = truth[2]  # the green tree
    assert inside(60 * m1 + s1, 60 * m2 + s2, start, end, slack=1.0), out.output
    rows = json.loads(runner.invoke(main, ["--index", str(root / "index"), "search", "a green tree", "--media",
                                           "video", "--all-segments", "--json"]).output)
    assert all(r["media"] == "video" for r in rows) and len(rows) >= 3
    bad = runner.invoke(main, ["--index", str(root / "index"), "search", "x", "--media", "sound"])
    assert bad.exit_code == 2
    listed = runner.invoke(main, ["--index", str(root / "index"), "list", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)
    videos = [e for e in entries if e["path"].endswith("clip.mp4")]
    assert len(videos) == 1 and videos[0]["segments"] >= 3
    assert len(entries) == 3
    info = runner.invoke(main, ["--index", str(root / "index"), "info", "--json"])
    facts = json.loads(info.output)
    assert facts["videos"] == 1 and facts["video_segments"] == videos[0]["segments"]
    assert facts["images"] == 2 + facts["video_segments"] == facts["vectors"]


@bundled
def test_a_changed_video_replaces_all_its_segments_and_a_removed_one_takes_them_all(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    three_scene_video(photos / "clip.mp4")
    index_folder(tmp_path / "index", photos, model="bundled", device="cpu", workers=0)
    with open_index(tmp_path / "index") as index:
        before = {h.id for h in index.search("a red circle", k=50, all_segments=True)}
    assert len(before) >= 3
    from searchlib.verify import verify

    os.rename(photos / "clip.mp4", tmp_path / "away.mp4")
    with open_index(tmp_path / "index") as index:
        assert verify(index).missing_files == [str(photos / "clip.mp4")]  # once, whatever its segments
    os.rename(tmp_path / "away.mp4", photos / "clip.mp4")
    write_video(photos / "clip.mp4", [(scene_picture("yellow", "sun", 7), 6.0)])
    report = index_folder(tmp_path / "index", photos, workers=0)
    assert report.updated == 1
    with open_index(tmp_path / "index") as index:
        after = index.search("a yellow sun", k=50, all_segments=True)
        assert len(after) == 1 and after[0].id not in before and after[0].metadata["end"] == pytest.approx(6, abs=.5)
        assert index.catalog.count() == 1
    os.rename(photos / "clip.mp4", photos / "moved.mp4")
    report = index_folder(tmp_path / "index", photos, workers=0)
    assert report.moved == 1 and report.removed == 0
    with open_index(tmp_path / "index") as index:
        assert [h.path for h in index.search("a sun", k=5)] == [str(photos / "moved.mp4")]
        assert index.catalog.count() == 1
    shutil.rmtree(photos)
    photos.mkdir()
    index_folder(tmp_path / "index", photos, workers=0)
    with open_index(tmp_path / "index") as index:
        assert index.catalog.count() == 0


@bundled
def test_file_is_served_with_range_and_a_segment_thumbnail_is_a_frame_inside_it(video_index):
    from fastapi.testclient import TestClient

    from searchlib.web.app import create_app

    root, photos, truth, _ = video_index
    app = create_app(root / "index")
    with TestClient(app, base_url="http://localhost") as client:
        hits = client.get("/api/v1/search", params={"q": "a blue star", "media": "video", "k": 1}).json()
        hit = hits["hits"][0] if isinstance(hits, dict) else hits[0]
        assert hit["media"] == "video"
        data = (photos / "clip.mp4").read_bytes()
        part = client.get(hit["file_url"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        thumb = client.get(hit["thumbnail_url"])
        assert thumb.status_code == 200, thumb.text
        from io import BytesIO

        from PIL import Image

        shown = np.asarray(Image.open(BytesIO(thumb.content)).convert("RGB").resize((32, 32)), dtype=np.float32)
        expected = {}
        for i, (color, shape, _) in enumerate(THREE_SCENES):
            expected[(color, shape)] = np.asarray(scene_picture(color, shape, 1 + i).resize((32, 32)), np.float32)
        nearest = min(expected, key=lambda key: np.abs(expected[key] - shown).mean())
        scene = next((s, e) for c, sh, s, e in truth if (c, sh) == nearest)
        assert inside(hit["start"], hit["end"], *scene)


def _row(path: str, vec, segment=None, text=None):
    from searchlib.records import ImageMetadata, ImageRecord

    meta = ImageMetadata(width=4, height=3, format="MP4" if segment else "PNG", text=text)
    return ImageRecord(path, 10, 1_000, f"hash-{path}", meta, segment), np.asarray(vec, dtype=np.float32)


def test_migrating_a_0005_catalog_keeps_ids_words_and_the_high_water_mark(tmp_path):
    """0006 rebuilds ``images`` on SQLite: ids, vectors, tags, the read-text index and its triggers,
    and AUTOINCREMENT's memory of deleted ids all survive; (path, part) is the new uniqueness."""
    from alembic import command

    from searchlib.catalog import SCHEMA_HEAD, Catalog, ChangeSet
    from searchlib.filters import Filters
    from searchlib.migrate import alembic_config, upgrade
    from searchlib.records import Segment

    cat = Catalog(tmp_path / "c.sqlite", create=True)
    ids = cat.apply(ChangeSet(added=[_row(f"/{n}", [1, n], text=f"pharmacy {n}") for n in range(4)])).added_ids
    cat.replace_tags(["cat"], [(i, "cat", 0.9) for i in ids])
    cat.apply(ChangeSet(removed=[max(ids)]))
    with cat.engine.connect() as conn:  # back to 0006, as an index written before videos is
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        with conn.begin():
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()
    assert cat.schema_revision() == "0006"
    upgrade(cat.engine)
    assert cat.schema_revision() == SCHEMA_HEAD
    with cat.engine.connect() as conn:
        triggers = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert triggers == {"images_text_insert", "images_text_delete", "images_text_update"}
        assert conn.exec_driver_sql("SELECT count(*) FROM tags").scalar() == 3
    assert sorted(cat.images(ids)) == sorted(ids[:3])
    assert cat.filtered_ids(Filters(text="pharmacy")).tolist() == sorted(ids[:3])
    # Two segments under one path; an image keeps its path unique; new ids stay above the deleted one.
    seg = [Segment(0, 0.0, 4.0, 8.0), Segment(1, 4.0, 8.0, 8.0)]
    added = cat.apply(ChangeSet(added=[_row("/v.mp4", [0, 1], s, text="pharmacy v") for s in seg])).added_ids
    assert len(set(added)) == 2 and min(added) > max(ids)
    assert cat.filtered_ids(Filters(text="pharmacy", media="video")).tolist() == sorted(added)
    assert cat.file_states()["/v.mp4"].all_ids == tuple(added)
    cat.apply(ChangeSet(removed=[ids[0]]))  # the delete trigger keeps the word index in step
    assert ids[0] not in cat.filtered_ids(Filters(text="pharmacy")).tolist()


def test_any_file_name_is_read_and_a_fifo_never_hangs(tmp_path):
    from searchlib.media.video import frame_at

    path, _ = three_scene_video(tmp_path / "clip.mp4")
    hostile = os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xff\xfe -- $(x).mp4")  # not UTF-8
    shutil.copy(path, hostile)
    assert len(decode_video(hostile, hostile, PREP).segments) == 3
    assert frame_at(hostile, 5.0, 128).size == (128, 128)
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        decode_video(str(tmp_path / "pipe.mp4"), "pipe.mp4", PREP)


@pytest.fixture(scope="module")
def served_video(tmp_path_factory):
    """``searchlib serve`` (a real process) over an index of a three-scene WebM (VP8: a codec every
    Chromium build plays) and a photo."""
    if not BUNDLED_WEIGHTS.is_file():
        pytest.skip("bundled weights not built")
    from tests.test_serve_browser import start_server, stop_server

    root = tmp_path_factory.mktemp("video-page")
    photos = root / "photos"
    photos.mkdir()
    scenes, truth, t = [], [], 0.0
    for i, (color, shape, seconds) in enumerate(THREE_SCENES):
        scenes.append((scene_picture(color, shape, 1 + i), seconds))
        truth.append((color, shape, t, t + seconds))
        t += seconds
    write_video(photos / "clip.webm", scenes, codec="libvpx")
    scene_picture("red", "circle", 11).save(photos / "red.png")
    index_folder(root / "index", photos, model="bundled", device="cpu", workers=0)
    proc, url = start_server(root / "index")
    yield url, truth
    stop_server(proc)
    assert proc.returncode == 0


def test_the_viewer_plays_a_video_hit_from_its_start(served_video, browser):  # noqa: F811
    url, truth = served_video
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{url}/?q=a+green+tree")
        page.wait_for_selector(".tile .clip")
        badge = page.inner_text(".tile .clip")
        page.click(".tile:has(.clip)")
        page.wait_for_selector("#play:not([hidden])")
        assert page.is_hidden("#big")
        page.wait_for_function("() => document.querySelector('#play').readyState >= 1", timeout=20000)
        hit = page.evaluate("() => { const v = document.querySelector('#play'); "
                            "return {t: v.currentTime, src: v.currentSrc}; }")
        start, end = (float(x) for x in re.search(r"#t=([\d.]+),([\d.]+)", hit["src"]).groups())
        _, _, scene_start, scene_end = truth[2]  # the green tree
        assert inside(start, end, scene_start, scene_end)
        assert start - 0.2 <= hit["t"] <= end + 0.2  # the player stands at the segment, not at 0:00
        assert "▶" in badge and "–" in badge
        page.keyboard.press("Escape")
        assert page.evaluate("() => document.querySelector('#play').paused")
        # The media filter: from the URL to the filters panel and the API; only video hits come.
        page.goto(f"{url}/?q=a+red+circle&media=video")
        page.wait_for_selector(".tile")
        assert page.input_value("#f-media") == "video"
        assert page.eval_on_selector_all(".tile", "els => els.every(e => e.querySelector('.clip'))")
    finally:
        context.close()
    assert not errors, errors


def test_segment_rows_on_every_backend(catalog_url):
    """(path, part) is the catalog's uniqueness on SQLite and PostgreSQL alike (PostgreSQL: from a
    catalog migrated to 0005 first, as existing ones are): a video's rows are written, replaced in
    one batch, filtered by media and removed together."""
    from searchlib.catalog import Catalog, ChangeSet
    from searchlib.filters import Filters
    from searchlib.migrate import upgrade
    from searchlib.records import Segment

    if not catalog_url.startswith("postgresql"):
        cat = Catalog(catalog_url, create=True)
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(catalog_url)
        upgrade(engine, "0006")
        with engine.begin() as conn:  # an image indexed before videos existed
            conn.execute(sa.text("INSERT INTO images (path, size, mtime_ns, content_hash, width, height, "
                                 "indexed_at, captured_at, date_source) VALUES (:p, 1, 1, 'h', 1, 1, now(), now(), "
                                 "'file')"), {"p": b"/old.png"})
        engine.dispose()
        cat = Catalog(catalog_url, create=True)  # migrates to the head
        assert cat.file_states()["/old.png"].all_ids == (cat.id_of_path("/old.png"),)
    photo = cat.apply(ChangeSet(added=[_row("/p.png", [1, 0])])).added_ids
    segs = [Segment(i, 4.0 * i, 4.0 * i + 4, 12.0) for i in range(3)]
    first = cat.apply(ChangeSet(added=[_row("/v.mp4", [0, 1], s) for s in segs])).added_ids
    assert cat.file_states()["/v.mp4"].all_ids == tuple(first)
    assert cat.filtered_ids(Filters(media="video")).tolist() == sorted(first)
    assert photo[0] in cat.filtered_ids(Filters(media="image")).tolist()
    # An update: the old rows go and the new ones come in one batch (fewer segments now).
    second = cat.apply(ChangeSet(removed=first, added=[_row("/v.mp4", [0, 1], s) for s in segs[:2]])).added_ids
    assert not set(second) & set(first)
    rows = cat.images(second)
    assert [(rows[i].record.segment.start, rows[i].record.segment.end) for i in second] == [(0, 4), (4, 8)]
    assert cat.file_states()["/v.mp4"].all_ids == tuple(second)
    cat.apply(ChangeSet(removed=list(cat.file_states()["/v.mp4"].all_ids)))
    assert "/v.mp4" not in cat.file_states() and cat.filtered_ids(Filters(media="video")).size == 0


def test_words_are_never_read_in_video_segments(tmp_path):
    """Turning --read-text on reads the photos indexed before; a video's segments are not photos
    (reading one would read the whole video file per segment)."""
    from searchlib.catalog import Catalog, ChangeSet
    from searchlib.records import Segment

    cat = Catalog(tmp_path / "c.sqlite", create=True)
    (photo,) = cat.apply(ChangeSet(added=[_row("/d/p.png", [1, 0])])).added_ids
    cat.apply(ChangeSet(added=[_row("/d/v.mp4", [0, 1], Segment(i, i, i + 1.0, 2.0)) for i in range(2)]))
    assert cat.unread_text(["/d"]) == [(photo, "/d/p.png")]


def test_a_videos_own_segments_are_not_duplicates_but_a_copy_of_it_is(tmp_path):
    from PIL import Image

    from searchlib.analysis import near_duplicates
    from tests.conftest import TINY

    base = np.asarray(scene_picture("blue", "star", 4), dtype=np.float32)
    frames = [(Image.fromarray(np.clip(base * (0.9 + 0.1 * i / 24), 0, 255).astype(np.uint8)), 1.0)
              for i in range(25)]
    photos = tmp_path / "p"
    photos.mkdir()
    write_video(photos / "a.mp4", frames, fps=4, jitter=False)
    index_folder(tmp_path / "i", photos, model=TINY, device="cpu", workers=0)
    with open_index(tmp_path / "i") as index:
        assert index.catalog.video_counts()[1] >= 2  # several segments, alike
        assert near_duplicates(index, threshold=0.9) == []
    shutil.copy(photos / "a.mp4", photos / "b.mp4")
    index_folder(tmp_path / "i", photos, workers=0)
    with open_index(tmp_path / "i") as index:
        groups = near_duplicates(index, threshold=0.9)
    assert [[m["path"] for m in g] for g in groups] == [[str(photos / "a.mp4"), str(photos / "b.mp4")]]


def test_a_video_thumbnail_is_made_only_of_the_indexed_file(tmp_path):
    """A video replaced since it was indexed (another clip, or a symlink to one) gets no thumbnail of
    the other clip: ImageNotFoundError; the indexed clip is hashed once, then remembered."""
    from searchlib.errors import ImageNotFoundError
    from searchlib.records import content_hash
    from searchlib.thumbnails import thumbnail
    from tests.videofiles import three_scene_video

    clip, _ = three_scene_video(tmp_path / "clip.mp4")
    other, _ = three_scene_video(tmp_path / "other.mp4", seed=5)
    digest = content_hash(clip.read_bytes())
    (tmp_path / "index").mkdir()
    made = thumbnail(tmp_path / "index", str(clip), digest, 128, at=0.5)
    assert made.data and made.data[:2] == b"\xff\xd8"
    clip.unlink()
    clip.symlink_to(other)
    with pytest.raises(ImageNotFoundError, match="not the file indexed"):
        thumbnail(tmp_path / "index", str(clip), digest, 128, at=1.5)


@pytest.mark.parametrize("turns", [1, 3])
def test_a_portrait_phone_video_is_read_upright(tmp_path, turns):
    """A phone stores a portrait video on its side with a display matrix: its frames are embedded,
    thumbnailed and sized as players show them, not sideways."""
    import av
    import numpy as np
    from PIL import Image

    from searchlib.imaging import Preprocess
    from searchlib.media.video import decode_video, frame_at
    from tests.videofiles import set_display_rotation, write_video

    coded = np.zeros((64, 128, 3), np.uint8)
    coded[:, :64] = 255  # stored: white on the left half of a landscape frame
    path = write_video(tmp_path / "portrait.mp4", [(Image.fromarray(coded), 2.0)], jitter=False)
    set_display_rotation(path, turns)
    with av.open(str(path)) as c:
        assert round(next(c.decode(video=0)).rotation) == (-90 if turns == 1 else 90)
    shown = np.asarray(frame_at(str(path), 0.5, 256).convert("L"), dtype=float)
    assert shown.shape == (128, 64)  # portrait, as shown
    top, bottom = shown[:64].mean(), shown[64:].mean()
    # A quarter turn clockwise brings the left half to the top; counterclockwise, to the bottom.
    assert (top > 200 and bottom < 50) if turns == 1 else (top < 50 and bottom > 200), (top, bottom)
    items = decode_video(str(path), "portrait.mp4", Preprocess(32, resize_mode="squash"))
    assert (items.metadata.width, items.metadata.height) == (64, 128)
    model = items.pixels[0].astype(float).mean(axis=2)
    assert (model[:16].mean() > model[16:].mean()) == (turns == 1)
