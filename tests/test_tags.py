"""Tags (``searchlib tag``, :func:`searchlib.analysis.tag_index`): written through the index's
writer, never beside a running indexer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from searchlib import open_index
from searchlib.analysis import tag_index
from searchlib.cli.main import main
from searchlib.errors import IndexBusyError
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images


@pytest.fixture
def tagged_index(tmp_path):
    write_images(tmp_path / "p", 6)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    return tmp_path / "i"


def test_tag_moves_the_generation_and_readers_see_the_tags(tagged_index):
    with open_index(tagged_index) as reader:
        before = reader.generation()
        counts = tag_index(reader, ["cat", "dog"])
        after = reader.generation()
        tagged = [img for img in reader.images() if img["tags"]]
    assert after == before + 1  # the write is visible to every reader as a new generation
    assert sum(counts.values()) == len(tagged) == 6


def test_tag_is_refused_while_an_indexer_holds_the_writer_lock(tagged_index):
    with open_index(tagged_index) as indexer, open_index(tagged_index) as other:
        with indexer.writer():  # what a running 'searchlib index' holds
            generation = other.generation()
            with pytest.raises(IndexBusyError):
                tag_index(other, ["cat", "dog"])
            result = CliRunner().invoke(main, ["--index", str(tagged_index), "tag", "--labels", "cat,dog"])
            assert result.exit_code == 1 and "indexing into" in result.output
            assert other.generation() == generation and other.catalog.tag_counts() == {}
    with open_index(tagged_index) as index:  # once the run is over, tagging works
        out = CliRunner().invoke(main, ["--index", str(tagged_index), "tag", "--labels", "cat,dog", "--json"])
        assert out.exit_code == 0 and sum(json.loads(out.stdout).values()) == 6
        assert sum(index.catalog.tag_counts().values()) == 6
