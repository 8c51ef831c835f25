import numpy as np

from searchlib.catalog import SCHEMA_HEAD, Catalog, NewImage
from searchlib.migrate import head_revision


def _item(path: str, vec) -> NewImage:
    return NewImage(path, 10, 1_000, f"hash-{path}", {"width": 4, "height": 3, "format": "PNG"},
                    np.asarray(vec, dtype=np.float32))


def test_schema_head_matches_migrations():
    assert head_revision() == SCHEMA_HEAD


def test_new_catalog_is_migrated_and_uses_wal(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite", create=True)
    assert cat.schema_revision() == SCHEMA_HEAD
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert cat.count() == 0 and cat.generation() == 0


def test_write_batch_add_update_remove_bumps_generation(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite", create=True)
    ids, gen1 = cat.write_batch([_item("/a", [1, 0]), _item("/b", [0, 1])])
    assert len(ids) == 2 and gen1 == 1
    _, gen2 = cat.write_batch([], updated=[(ids[0], _item("/a", [0.6, 0.8]))], removed=[ids[1]])
    assert gen2 == 2 and cat.generation() == 2
    gen, got_ids, vecs = cat.snapshot_vectors()
    assert gen == 2 and got_ids.tolist() == [ids[0]]
    np.testing.assert_allclose(vecs, [[0.6, 0.8]])
    assert cat.file_states() == {"/a": (ids[0], 10, 1_000)}
    assert cat.rows([ids[0]])[ids[0]].metadata_dict()["format"] == "PNG"
    assert set(cat.vectors_by_hash(["hash-/a", "hash-x"])) == {"hash-/a"}
