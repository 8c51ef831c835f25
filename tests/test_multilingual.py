"""Multilingual models end to end, offline: tiny random-init models built from local files (a Hugging
Face XLM-RoBERTa-shaped text tower with tokenizer.json; a text transformer with a SentencePiece
tokenizer) through open_clip's real loading path. The torch-free query path must give the
reference tokenizer's tokens and the torch text tower's vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from searchlib.cli.main import main
from searchlib.embedding import Embedder
from searchlib.indexer import index_folder
from searchlib.models import parse_model_spec
from searchlib.textenc import NOTE_FILE, OnnxTextEncoder, export_text_encoder
from searchlib.tokenizing import load_tokenizer
from tests.conftest import TINY, write_images
from tests.hfmodels import SENTENCES, build_hf_text_model, build_sentencepiece_tokenizer, write_configs

pytest.importorskip("transformers")

TEXTS = SENTENCES + ["A Red CIRCLE!!", "  spaces\tand\nnewlines ", "emoji 🐱 😀 and &amp; html", "x" * 500,
                     "混合 mixed текст", "", "Ünïcödé naïve café", "數字 123 ４５６"]
HF = "searchlib-multilingual-test-hf"
SP = "searchlib-multilingual-test-sp"


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilingual")
    hf, sp = build_hf_text_model(root / "hf"), build_sentencepiece_tokenizer(root / "sp")
    folder = write_configs(root / "configs", hf, sp)
    patch = pytest.MonkeyPatch()
    patch.setenv("SEARCHLIB_MODEL_CONFIGS", str(folder))
    yield folder
    patch.undo()


@pytest.mark.parametrize("arch,kind", [(HF, "hf"), (SP, "sentencepiece")])
def test_torch_free_tokens_and_text_tower_match_the_reference(configs, tmp_path, arch, kind):
    embedder = Embedder(parse_model_spec(f"{arch}/random"), device="cpu")
    assert export_text_encoder(embedder, tmp_path)
    note = json.loads((tmp_path / NOTE_FILE).read_text())
    assert note["tokenizer"] == kind
    ours = load_tokenizer(note["tokenizer"], tmp_path, int(note["context_length"]))
    reference = embedder.tokenizer()(TEXTS).numpy()
    np.testing.assert_array_equal(ours(TEXTS), reference)
    encoder = OnnxTextEncoder.for_index(tmp_path, embedder.identity)
    assert encoder is not None
    fast, slow = encoder.embed_texts(TEXTS), embedder.embed_texts(TEXTS)
    cosines = (fast * slow).sum(axis=1)
    assert (cosines >= 0.999).all(), cosines.min()


def test_index_and_search_in_chinese_in_a_new_process_without_torch(configs, tmp_path):
    write_images(tmp_path / "p", 6)
    report = index_folder(tmp_path / "i", tmp_path / "p", model=f"{HF}/random", device="cpu", workers=0)
    assert report.added == 6
    index = str(tmp_path / "i")
    code = ("import sys, json\nfrom click.testing import CliRunner\nfrom searchlib.cli.main import main\n"
            f"r = CliRunner().invoke(main, ['--index', {index!r}, 'search', '一个红色的圆形', '--json'])\n"
            "assert r.exit_code == 0, r.output\nassert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'warning' not in r.stderr, r.stderr\nprint(len(json.loads(r.stdout)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SEARCHLIB_MODEL_CONFIGS": str(configs)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "6"


def test_an_english_only_model_warns_about_a_chinese_query(tmp_path):
    write_images(tmp_path / "p", 3)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    result = CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "search", "一只红色的圆", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 3
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Chinese characters" in warnings[0] and "xlm-roberta" in warnings[0]
    assert "warning" not in CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "search", "a red circle"]).stderr
    from searchlib import open_index

    with open_index(tmp_path / "i") as index:
        assert index.query_warnings("Привет мир") and not index.query_warnings("ein roter Kreis")


def test_models_lists_the_multilingual_models_with_their_languages():
    result = CliRunner().invoke(main, ["models", "--json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", "nllb-clip-base-siglip/v1",
                 "ViT-B-16-SigLIP-i18n-256/webli"):
        assert name in rows and "languages" in rows[name]["languages"] or "multilingual" in rows[name]["languages"]
    assert rows["ViT-B-32/laion2b_s34b_b79k"]["languages"] == "English"
