from __future__ import annotations

import os
import subprocess
import sys

import pytest

from searchlib import models
from searchlib.errors import ModelError, ModelUnavailableError
from searchlib.models import BUNDLED_ARCH, ModelIdentity, parse_model_spec
from tests.conftest import TINY, write_images
from tests.helpers_cli import EXE


def test_parse_arch_tag():
    spec = parse_model_spec("ViT-B-32/laion2b_s34b_b79k")
    assert (spec.arch, spec.pretrained, spec.checkpoint, spec.name) == (
        "ViT-B-32", "laion2b_s34b_b79k", None, "ViT-B-32/laion2b_s34b_b79k")


def test_default_spec_is_the_documented_default():
    from searchlib.config import DEFAULT_MODEL

    assert parse_model_spec(None).name == DEFAULT_MODEL


def test_bundled_spec_points_at_package_weights():
    spec = parse_model_spec("bundled")
    assert spec.arch == BUNDLED_ARCH and spec.checkpoint == models.BUNDLED_WEIGHTS


def test_checkpoint_spec(tmp_path):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"x")
    spec = parse_model_spec("ViT-B-32", ckpt)
    assert spec.checkpoint == ckpt.resolve() and spec.pretrained is None
    with pytest.raises(ModelError, match="not found"):
        parse_model_spec("ViT-B-32", tmp_path / "nope.pt")
    with pytest.raises(ModelError, match="needs --model ARCH"):
        parse_model_spec("ViT-B-32/openai", ckpt)


@pytest.mark.parametrize("bad", ["ViT-B-32", "/tag", "ViT-B-32/", ""])
def test_malformed_specs(bad):
    if bad == "":
        return  # empty means the default
    with pytest.raises(ModelError, match="ARCH/TAG"):
        parse_model_spec(bad)


def test_unknown_arch_and_tag_are_clear():
    with pytest.raises(ModelError, match="unknown model architecture"):
        models.check_pretrained("No-Such-Arch", "x")
    with pytest.raises(ModelError, match="unknown pretrained tag 'nope' for ViT-B-32"):
        models.check_pretrained("ViT-B-32", "nope")


def test_offline_without_cache_says_what_to_do(monkeypatch):
    monkeypatch.setattr(models, "pretrained_cache_file", lambda a, t: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="not cached.*--model bundled"):
        models.check_pretrained("ViT-B-32", "laion2b_s34b_b79k")


def _ident(**kw):
    base = dict(name="a", arch="ViT-B-32", pretrained="openai", checkpoint=None, weights_sha256=None,
                dim=512, image_size=224, mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1),
                interpolation="bicubic", resize_mode="shortest")
    base.update(kw)
    return ModelIdentity(**base)


def test_identity_round_trip_and_comparison():
    a = _ident()
    assert ModelIdentity.from_dict(a.to_dict()) == a
    assert a.same_model(_ident(name="renamed", checkpoint="/elsewhere"))
    assert not a.same_model(_ident(pretrained="laion2b_s34b_b79k"))
    assert not a.same_model(_ident(image_size=256))
    assert not a.same_model(_ident(weights_sha256="ff"))


def test_list_models_marks_bundled():
    rows = models.list_models()
    assert rows[0].name == "bundled"
    assert rows[0].available_offline == models.BUNDLED_WEIGHTS.is_file()
    assert any(r.name == "ViT-B-32/laion2b_s34b_b79k" for r in rows)


def test_offline_first_run_fails_fast_creates_nothing_and_names_the_fix(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    write_images(tmp_path / "p", 1)
    proc = subprocess.run([EXE, "--index", str(tmp_path / "new"), "index", str(tmp_path / "p")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "--model ViT-B-32 --checkpoint FILE" in proc.stderr and "not cached" in proc.stderr
    assert not (tmp_path / "new").exists()


def test_models_lists_everything_without_torch():
    code = ("import sys, json; from click.testing import CliRunner; from searchlib.cli.main import main\n"
            "r = CliRunner().invoke(main, ['models', '--all', '--json']); assert r.exit_code == 0, r.output\n"
            "rows = json.loads(r.stdout); assert len(rows) > 100 and rows[0]['name'] == 'bundled'\n"
            "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loading_a_random_init_model_prints_nothing():
    code = ("from searchlib.embedding import Embedder\nfrom searchlib.models import parse_model_spec\n"
            f"Embedder(parse_model_spec({TINY!r}), device='cpu').embed_texts(['a'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr == "" and proc.stdout == ""
