"""The trainer: CLIP loss goes down, checkpoints resume, fine-tuning reads caption folders."""

import json

import numpy as np
import pytest
from PIL import Image

from searchlib.errors import ConfigError
from searchlib.training import TrainConfig, read_caption_pairs, train


def _cfg(tmp_path, **kw):
    base = dict(model="searchlib-tiny/random", out_dir=str(tmp_path / "run"), steps=40, batch_size=24,
                lr=2e-3, warmup=4, checkpoint_every=20, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_result_loads(tmp_path):
    losses = []
    final = train(_cfg(tmp_path), resume=False, progress=lambda s: losses.append(s.loss))
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.15, losses
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    emb = Embedder(parse_model_spec("searchlib-tiny", final), device="cpu")
    vec = emb.embed_texts(["a red circle"])
    assert vec.shape == (1, 32)
    assert emb.identity.weights_sha256 and emb.identity.checkpoint == str(final)


def _outputs(path):
    """Embeddings of fixed texts and images: what reproducibility must preserve."""
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec
    from searchlib.synthetic import generate

    emb = Embedder(parse_model_spec("searchlib-tiny", path), device="cpu")
    samples = generate(16, 99)
    pixels = np.stack([np.asarray(s.image.resize((32, 32))) for s in samples])
    return np.concatenate([emb.embed_texts([s.caption for s in samples]), emb.embed_pixels(pixels)])


def _assert_same_model(a, b):
    # Equal up to the order of multithreaded float sums: Adam turns the noise in zero-gradient
    # parameters (attention key biases) into full-size steps, so weights are compared by outputs.
    cos = (_outputs(a) * _outputs(b)).sum(axis=1)
    assert cos.min() > 0.999, cos.min()


def test_same_seed_same_model_and_resume_continues(tmp_path):
    a = train(_cfg(tmp_path / "a", steps=6, checkpoint_every=3), resume=False)
    b = train(_cfg(tmp_path / "b", steps=6, checkpoint_every=3), resume=False)
    _assert_same_model(a, b)
    # A run stopped at step 3 and resumed ends where an uninterrupted run does.
    train(_cfg(tmp_path / "c", steps=3, checkpoint_every=3), resume=False)
    steps_seen = []
    c = train(_cfg(tmp_path / "c", steps=6, checkpoint_every=3), resume=True,
              progress=lambda s: steps_seen.append(s.step))
    assert steps_seen == [4, 5, 6]
    _assert_same_model(a, c)


def _caption_folder(folder, n=12):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"picture number {i}")
    return folder


def test_fine_tune_on_a_caption_folder(tmp_path):
    data = _caption_folder(tmp_path / "pairs")
    assert len(read_caption_pairs(data)) == 12
    final = train(_cfg(tmp_path, data=str(data), steps=4, batch_size=6), resume=False)
    assert final.is_file()


def test_captions_csv_is_read(tmp_path):
    data = _caption_folder(tmp_path / "pairs")
    (data / "captions.csv").write_text("path,caption\n0.png,a thing\n1.png,another thing\n")
    pairs = read_caption_pairs(data)
    assert [c for _, c in pairs] == ["a thing", "another thing"]


def test_folder_without_captions_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image/caption pairs"):
        read_caption_pairs(tmp_path / "empty")


def test_evaluate_reports_each_language_and_their_agreement():
    from click.testing import CliRunner

    from searchlib.cli.main import main

    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", "--model", "searchlib-tiny/random", "--count", "20", "--json",
                                  "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for lang in ("en", "zh"):
        assert {"t2i_r5", "single_t2i_r5", "color_accuracy", "shape_accuracy", "i2t_r1"} <= set(report[lang])
        assert all(0.0 <= v <= 1.0 for v in report[lang].values())
    assert 0.0 <= report["cross_lingual_top5_overlap"] <= 1.0
    table = runner.invoke(main, ["evaluate", "--model", "searchlib-tiny/random", "--count", "20", "--device", "cpu"])
    assert table.exit_code == 0 and table.stdout.splitlines()[0].split() == ["metric", "en", "zh"]
