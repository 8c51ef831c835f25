import hashlib
import os

import numpy as np

from searchlib.catalog import SCHEMA_HEAD, Catalog, ChangeSet, FailedFile
from searchlib.migrate import head_revision
from searchlib.records import ImageMetadata, ImageRecord


def _item(path: str, vec) -> tuple[ImageRecord, np.ndarray]:
    name = path if path.isascii() else hashlib.sha1(os.fsencode(path)).hexdigest()
    record = ImageRecord(path, 10, 1_000, f"hash-{name}", ImageMetadata(width=4, height=3, format="PNG"))
    return record, np.asarray(vec, dtype=np.float32)


def test_schema_head_matches_migrations():
    assert head_revision() == SCHEMA_HEAD


def test_new_catalog_is_migrated_and_uses_wal(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite", create=True)
    assert cat.schema_revision() == SCHEMA_HEAD
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert cat.count() == 0 and cat.generation() == 0


def test_apply_add_update_remove_bumps_generation_and_logs_changes(catalog_url):
    cat = Catalog(catalog_url, create=True)
    first = cat.apply(ChangeSet(added=[_item("/a", [1, 0]), _item("/b", [0, 1])]))
    ids = first.added_ids
    assert len(ids) == 2 and first.generation == 1 and first.previous == 0
    record, vec = _item("/a", [0.6, 0.8])
    second = cat.apply(ChangeSet(updated=[(ids[0], record, vec)], removed=[ids[1]]))
    assert second.generation == 2 and cat.generation() == 2
    assert sorted(second.touched.tolist()) == sorted(ids) and second.ids.tolist() == [ids[0]]
    gen, got_ids, vecs = cat.snapshot_vectors()
    assert gen == 2 and got_ids.tolist() == [ids[0]]
    np.testing.assert_allclose(vecs, [[0.6, 0.8]])
    state = cat.file_states()["/a"]
    assert (state.id, state.size, state.mtime_ns) == (ids[0], 10, 1_000)
    assert cat.images([ids[0]])[ids[0]].to_dict()["format"] == "PNG"
    assert set(cat.vectors_by_hash(["hash-/a", "hash-x"])) == {"hash-/a"}
    current, touched = cat.changes_since(1)
    assert current == 2 and touched.tolist() == sorted(ids)


def test_a_path_added_twice_updates_its_row(catalog_url):
    cat = Catalog(catalog_url, create=True)
    a = cat.apply(ChangeSet(added=[_item("/a", [1, 0])]))
    b = cat.apply(ChangeSet(added=[_item("/a", [0, 1])]))
    assert a.added_ids == b.added_ids and cat.count() == 1
    np.testing.assert_allclose(cat.snapshot_vectors()[2], [[0, 1]])


def test_failures_are_remembered_and_forgotten(catalog_url):
    cat = Catalog(catalog_url, create=True)
    cat.apply(ChangeSet(failed=[FailedFile("/bad.jpg", 5, 7, "not a readable image")]))
    assert cat.failed_files(["/"])["/bad.jpg"].error == "not a readable image"
    cat.apply(ChangeSet(added=[_item("/bad.jpg", [1, 0])]))  # fixed: indexed now
    assert cat.failed_files() == {}


def test_float16_storage_round_trips_within_half_precision(catalog_url):
    cat = Catalog(catalog_url, create=True)
    cat.set_vector_dtype("float16")
    v = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    applied = cat.apply(ChangeSet(added=[_item(f"/{i}", v[i]) for i in range(3)]))
    _, _, stored = cat.snapshot_vectors()
    np.testing.assert_allclose(stored, v, atol=1e-3)
    np.testing.assert_array_equal(applied.vectors, stored)  # what the cache gets is what is stored


def test_paths_that_are_not_utf8_and_folder_filters(catalog_url):
    from searchlib.filters import Filters

    cat = Catalog(catalog_url, create=True)
    odd = os.fsdecode(b"/photos/caf\xe9/\xff.jpg")
    applied = cat.apply(ChangeSet(added=[_item(odd, [1, 0]), _item("/photos/cafe/a.jpg", [0, 1]),
                                         _item("/photos/caf\u00e9/b.jpg", [1, 1])]))
    assert set(cat.file_states()) == {odd, "/photos/cafe/a.jpg", "/photos/caf\u00e9/b.jpg"}
    folder = os.fsdecode(b"/photos/caf\xe9")
    assert cat.filtered_ids(Filters(folder=folder)).tolist() == [applied.added_ids[0]]
    assert set(cat.file_states([folder])) == {odd}
    assert cat.images([applied.added_ids[0]])[applied.added_ids[0]].path == odd


def test_changes_since_a_pruned_generation_asks_for_a_rebuild(catalog_url, monkeypatch):
    from searchlib.catalog import changelog as module

    monkeypatch.setattr(module, "CHANGES_KEPT", 3)
    cat = Catalog(catalog_url, create=True)
    for i in range(256):
        cat.apply(ChangeSet(added=[_item(f"/{i}", [1, 0])]))
    assert cat.changes_since(10) is None  # pruned at generation 256
    current, touched = cat.changes_since(254)
    assert current == 256 and len(touched) == 2


def test_ids_are_never_reused_after_the_newest_photo_is_removed(catalog_url):
    # SQLite without AUTOINCREMENT gave a deleted highest id to the next photo, so a link to
    # the deleted one (/?like=ID, a cached /file) showed another photo (issue 27 #9).
    cat = Catalog(catalog_url, create=True)
    ids = cat.apply(ChangeSet(added=[_item("/a", [1, 0]), _item("/b", [0, 1])])).added_ids
    cat.apply(ChangeSet(removed=[max(ids)]))
    (new,) = cat.apply(ChangeSet(added=[_item("/c", [1, 0])])).added_ids
    assert new > max(ids)


def test_migrating_a_0003_catalog_keeps_vectors_and_tags_and_never_reuses_ids(tmp_path):
    from alembic import command

    from searchlib.migrate import alembic_config, upgrade

    path = tmp_path / "c.sqlite"
    cat = Catalog(path, create=True)
    ids = cat.apply(ChangeSet(added=[_item(f"/{n}", [1, n]) for n in range(4)])).added_ids
    cat.replace_tags(["cat"], [(i, "cat", 0.9) for i in ids])
    cat.apply(ChangeSet(removed=[max(ids)]))
    with cat.engine.connect() as conn:  # back to 0003, as an index written last round is
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        with conn.begin():
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()
    assert cat.schema_revision() == "0003"
    upgrade(cat.engine)
    assert cat.schema_revision() == SCHEMA_HEAD
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM embeddings").scalar() == 3
        assert conn.exec_driver_sql("SELECT count(*) FROM tags").scalar() == 3  # cascade on the removed one
    (new,) = cat.apply(ChangeSet(added=[_item("/new", [0, 1])])).added_ids
    assert new > max(ids)
