"""The cold query path: torch-free tokenizer and ONNX text tower match open_clip."""

import json
import subprocess
import sys

import numpy as np

from searchlib import open_index
from searchlib.indexer import index_folder
from searchlib.textenc import NOTE_FILE, ONNX_FILE, OnnxTextEncoder
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
