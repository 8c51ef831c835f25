"""The cold query path: torch-free tokenizer and ONNX text tower match open_clip."""

import json
import subprocess
import sys

import numpy as np

from searchlib import open_index
from searchlib.indexer import index_folder
from searchlib.textenc import EXPORT_VERSION, NOTE_FILE, ONNX_FILE, WEIGHTS_FILE, OnnxTextEncoder
from searchlib.tokenizing import ClipTokenizer
from tests.conftest import TINY

TEXTS = ["a red circle", "Two dogs on a BEACH at sunset!!", "it's 2019's café — naïve", "数字 🐱 &amp; <b>",
         "  spaces\tand\nnewlines ", "don't stop'll", "x" * 300, ""]


def test_tokenizer_matches_open_clip_token_for_token():
    import open_clip

    from searchlib.synthetic import generate

    texts = TEXTS + [s.caption for s in generate(200, 11)]
    ref = open_clip.get_tokenizer("ViT-B-32")(texts).numpy()
    np.testing.assert_array_equal(ClipTokenizer(77)(texts), ref)


def test_index_exports_the_text_tower_and_search_uses_it(images_dir, index_dir, tiny_embedder):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    assert (index_dir / ONNX_FILE).is_file()
    with open_index(index_dir) as index:
        encoder = index.text_encoder()
        assert isinstance(encoder, OnnxTextEncoder) and encoder.tower == "int8"  # its gate passed
        fp32 = OnnxTextEncoder.for_index(index_dir, index.identity)
        assert fp32.tower == "fp32"
        slow = index.embedder().embed_texts(TEXTS)
        assert ((fp32.embed_texts(TEXTS) * slow).sum(axis=1) > 0.999).all()
        assert ((encoder.embed_texts(TEXTS) * slow).sum(axis=1) >= 0.99).all()


def test_a_note_for_another_model_is_ignored(images_dir, index_dir):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    note = json.loads((index_dir / NOTE_FILE).read_text())
    (index_dir / NOTE_FILE).write_text(json.dumps({**note, "arch": "ViT-B-32"}))
    with open_index(index_dir) as index:
        assert index.text_encoder() is None
        assert len(index.search("a red circle", k=3)) == 3  # through the full model
    index_folder(index_dir, images_dir, device="cpu", workers=0)  # the next run re-exports
    with open_index(index_dir) as index:
        assert index.text_encoder() is not None


def test_cli_search_in_a_new_process_never_imports_torch(images_dir, index_dir):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from searchlib.cli.main import main\n"
        f"r = CliRunner().invoke(main, ['--index', {str(index_dir)!r}, 'search', 'a red circle', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(__import__('json').loads(r.stdout)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "10"


def test_console_script_search_exits_cleanly_with_its_output(images_dir, index_dir):
    from pathlib import Path

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    exe = Path(sys.executable).with_name("searchlib")
    out = subprocess.run([str(exe), "--index", str(index_dir), "search", "a red circle", "-k", "4", "--json"],
                         capture_output=True, text=True, check=True)
    assert len(json.loads(out.stdout)) == 4  # flushed before the quick exit
    table = subprocess.run([str(exe), "--index", str(index_dir), "search", "a red circle", "-k", "2"],
                           capture_output=True, text=True, check=True)
    assert len(table.stdout.strip().splitlines()) == 3


def _export(embedder, folder, **kw):
    from searchlib.textenc import _export_onnx
    from searchlib.tokenizing import context_length_of

    _export_onnx(embedder, folder, context_length_of(embedder.identity.arch), **kw)
    return json.loads((folder / NOTE_FILE).read_text())


def test_causal_tower_runs_over_each_texts_own_tokens_with_encode_texts_vectors(tiny_embedder, tmp_path):
    import onnxruntime as ort

    note = _export(tiny_embedder, tmp_path)
    assert note["version"] == EXPORT_VERSION and note["trim"] == {"pad_id": 0}
    length_axis = ort.InferenceSession(str(tmp_path / ONNX_FILE)).get_inputs()[0].shape[1]
    assert isinstance(length_axis, str)  # symbolic: any number of tokens
    encoder = OnnxTextEncoder(tmp_path, note)
    # Texts of every length up to past the context (32 tokens for the tiny model), in one batch.
    texts = TEXTS + [" ".join(["word"] * n) for n in range(0, 40, 3)]
    reference = tiny_embedder.embed_texts(texts)  # torch, over the full context with its padding
    together = encoder.embed_texts(texts)
    assert ((together * reference).sum(axis=1) > 0.9999).all()
    alone = np.concatenate([encoder.embed_texts([t]) for t in texts])
    assert ((alone * together).sum(axis=1) > 0.99999).all()
    assert not tiny_embedder.reference_model().training  # the export left the model as it found it


def test_bidirectional_tower_is_exported_over_the_full_context(tmp_path):
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    bundled = Embedder(parse_model_spec("bundled"), device="cpu")
    note = _export(bundled, tmp_path)  # no causal mask, pooled at the last position: padding matters
    assert note["version"] == EXPORT_VERSION and note["trim"] is None
    encoder = OnnxTextEncoder(tmp_path, note)
    assert encoder.pad_id is None
    assert ((encoder.embed_texts(TEXTS) * bundled.embed_texts(TEXTS)).sum(axis=1) > 0.999).all()


def test_a_cut_that_fails_its_check_falls_back_to_the_full_context(tiny_embedder, tmp_path, monkeypatch):
    import searchlib.textenc as textenc

    monkeypatch.setattr(textenc, "_check_cut_file", lambda *a: 0.98)
    note = _export(tiny_embedder, tmp_path)
    assert note["trim"] is None
    encoder = OnnxTextEncoder(tmp_path, note)
    assert ((encoder.embed_texts(TEXTS) * tiny_embedder.embed_texts(TEXTS)).sum(axis=1) > 0.9999).all()


def test_the_weights_are_kept_beside_the_graph_and_checked(images_dir, index_dir):
    """Export format 3: the graph names its weights file and that file's checksum (so the graph's
    checksum covers the weights too); the vectors are those of encode_text."""
    import onnx

    from searchlib.textenc import WEIGHTS_CHECKSUM_KEY, tower_problem
    from searchlib.vectors import file_checksum

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    graph = onnx.load(str(index_dir / ONNX_FILE), load_external_data=False)
    external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all({e.key: e.value for e in t.external_data}["location"] == WEIGHTS_FILE for t in external)
    named = {p.key: p.value for p in graph.metadata_props}[WEIGHTS_CHECKSUM_KEY]
    assert named == file_checksum(index_dir / WEIGHTS_FILE)
    assert (index_dir / WEIGHTS_FILE).stat().st_size > 4 * (index_dir / ONNX_FILE).stat().st_size
    note = json.loads((index_dir / NOTE_FILE).read_text())
    assert tower_problem(index_dir, ONNX_FILE, note["checksum"]) is None
    with open_index(index_dir) as index:
        fp32 = OnnxTextEncoder.for_index(index_dir, index.identity)
        assert ((fp32.embed_texts(TEXTS) * index.embedder().embed_texts(TEXTS)).sum(axis=1) > 0.999).all()
    (index_dir / WEIGHTS_FILE).unlink()
    assert "missing" in tower_problem(index_dir, ONNX_FILE, note["checksum"])
    with open_index(index_dir) as index:
        assert OnnxTextEncoder.for_index(index_dir, index.identity) is None  # the full model answers
        assert len(index.search("a red circle", k=3)) == 3


def test_an_export_with_the_weights_inside_the_graph_still_answers(images_dir, index_dir):
    """Export format 2 kept the weights in the graph file: such an index answers as before, and the
    next index run exports format 3."""
    import onnx

    from searchlib.vectors import checksum

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    model = onnx.load(str(index_dir / ONNX_FILE))  # with its weights, from the weights file
    del model.metadata_props[:]
    onnx.save_model(model, str(index_dir / ONNX_FILE))
    (index_dir / WEIGHTS_FILE).unlink()
    note = json.loads((index_dir / NOTE_FILE).read_text())
    note.update(version=2, checksum=checksum((index_dir / ONNX_FILE).read_bytes()))
    (index_dir / NOTE_FILE).write_text(json.dumps(note))
    with open_index(index_dir) as index:
        fp32 = OnnxTextEncoder.for_index(index_dir, index.identity)
        assert fp32 is not None
        assert ((fp32.embed_texts(TEXTS) * index.embedder().embed_texts(TEXTS)).sum(axis=1) > 0.999).all()
    index_folder(index_dir, images_dir, device="cpu", workers=0)
    assert json.loads((index_dir / NOTE_FILE).read_text())["version"] == EXPORT_VERSION
    assert (index_dir / WEIGHTS_FILE).is_file()


def test_an_older_export_answers_queries_and_the_next_index_run_exports_again(images_dir, index_dir):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    note = json.loads((index_dir / NOTE_FILE).read_text())
    old = {k: v for k, v in note.items() if k not in ("version", "trim")}  # what searchlib wrote before
    (index_dir / NOTE_FILE).write_text(json.dumps(old))
    with open_index(index_dir) as index:
        fp32 = OnnxTextEncoder.for_index(index_dir, index.identity)
        assert fp32 is not None and fp32.pad_id is None  # over the full context, as that export was made
        assert ((fp32.embed_texts(TEXTS) * index.embedder().embed_texts(TEXTS)).sum(axis=1) > 0.999).all()
    index_folder(index_dir, images_dir, device="cpu", workers=0)  # nothing new to index: exports again
    again = json.loads((index_dir / NOTE_FILE).read_text())
    assert again["version"] == EXPORT_VERSION and again["trim"] == {"pad_id": 0}
