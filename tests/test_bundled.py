"""The bundled model: loads offline through the checkpoint path and understands shapes and colors."""

import random

import numpy as np
import pytest

from searchlib import open_index
from searchlib.indexer import index_folder
from searchlib.models import BUNDLED_WEIGHTS, list_models, parse_model_spec
from searchlib.synthetic import make_sample

pytestmark = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")

QUERIES = [("a red circle", "circle", "red"), ("a blue star", "star", "blue"), ("a yellow sun", "sun", "yellow"),
           ("a green tree", "tree", "green"), ("a purple car", "car", "purple"), ("an orange house", "house", "orange"),
           ("a pink flower", "flower", "pink"), ("a black triangle", "triangle", "black")]


@pytest.fixture(scope="module")
def shapes_index(tmp_path_factory):
    """6 single-object images of each queried kind (varied size, position, background) among 120 others."""
    root = tmp_path_factory.mktemp("shapes")
    rng = random.Random(2024)
    truth = {}
    samples = [make_sample(rng, 160, shape=s, color=c, count=1) for _, s, c in QUERIES for _ in range(6)]
    samples += [make_sample(rng, 160) for _ in range(120)]
    for i, sample in enumerate(samples):
        path = root / "photos" / f"{i:04d}.jpg"
        path.parent.mkdir(exist_ok=True)
        sample.image.save(path, quality=90)
        truth[str(path)] = sample
    report = index_folder(root / "index", root / "photos", model="bundled", device="cpu")
    assert report.added == len(samples) and report.failed == 0
    return root / "index", truth


def test_bundled_is_listed_as_offline_and_loads_through_the_checkpoint_path():
    spec = parse_model_spec("bundled")
    assert spec.checkpoint == BUNDLED_WEIGHTS and BUNDLED_WEIGHTS.suffix == ".safetensors"
    assert BUNDLED_WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    assert next(m for m in list_models() if m.name == "bundled").available_offline


def test_text_queries_find_matching_images(shapes_index):
    index_dir, truth = shapes_index
    precisions = []
    with open_index(index_dir) as index:
        for query, shape, color in QUERIES:
            hits = index.search(query, k=5)
            good = [truth[h.path].shape == shape and truth[h.path].color == color for h in hits]
            precisions.append(np.mean(good))
    assert np.mean(precisions) >= 0.8, dict(zip([q for q, _, _ in QUERIES], precisions))


def test_zero_shot_color_and_shape(shapes_index):
    from searchlib.analysis import classify

    index_dir, truth = shapes_index
    singles = [p for p, s in truth.items() if s.count == 1][:60]
    with open_index(index_dir) as index:
        colors = classify(index, singles, ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
                                           "black", "white", "gray"])
        shapes = classify(index, singles, ["circle", "square", "triangle", "star", "house", "tree", "car", "sun",
                                           "flower"])
    color_acc = np.mean([c.label == truth[c.path].color for c in colors])
    shape_acc = np.mean([c.label == truth[c.path].shape for c in shapes])
    assert color_acc >= 0.9 and shape_acc >= 0.85, (color_acc, shape_acc)


def test_near_duplicates_are_grouped(tmp_path):
    from PIL import ImageEnhance

    from searchlib.analysis import near_duplicates

    rng = random.Random(77)
    folder = tmp_path / "p"
    folder.mkdir()
    originals = [make_sample(rng, 200, shape=s, color=c).image
                 for s, c in [("circle", "red"), ("car", "blue"), ("tree", "green"), ("star", "yellow")]]
    for i, img in enumerate(originals):
        img.save(folder / f"orig{i}.png")
    base = originals[0]
    base.save(folder / "reencoded.jpg", quality=60)
    base.resize((150, 150)).save(folder / "resized.png")
    base.crop((6, 6, 194, 194)).save(folder / "cropped.png")
    ImageEnhance.Brightness(base).enhance(1.15).save(folder / "brighter.png")
    index_folder(tmp_path / "i", folder, model="bundled", device="cpu", workers=0)
    with open_index(tmp_path / "i") as index:
        groups = near_duplicates(index, threshold=0.9)
    names = [sorted(m["path"].rsplit("/", 1)[1] for m in g) for g in groups]
    assert names[0] == sorted(["orig0.png", "reencoded.jpg", "resized.png", "cropped.png", "brighter.png"]), names
    assert all(len(g) < 5 for g in names[1:])


ZH_QUERIES = [("一个红色的圆形", "circle", "red"), ("两颗蓝色的星星", "star", "blue"),
              ("黄色的太阳", "sun", "yellow"), ("一棵绿色的树", "tree", "green"),
              ("一辆紫色的汽车", "car", "purple"), ("一朵粉红色的花", "flower", "pink")]


def test_chinese_queries_find_the_same_things(shapes_index):
    index_dir, truth = shapes_index
    precisions = []
    with open_index(index_dir) as index:
        assert index.query_warnings("一个红色的圆形") == []  # the bundled model reads Chinese
        for query, shape, color in ZH_QUERIES:
            hits = index.search(query, k=5)
            precisions.append(np.mean([truth[h.path].shape == shape and truth[h.path].color == color for h in hits]))
    assert np.mean(precisions) >= 0.8, dict(zip([q for q, _, _ in ZH_QUERIES], precisions))


def test_bundled_torch_free_path_matches_open_clip(tmp_path):
    import json

    from searchlib.embedding import Embedder
    from searchlib.textenc import NOTE_FILE, OnnxTextEncoder, export_text_encoder
    from searchlib.tokenizing import load_tokenizer

    texts = ["a red circle", "两颗蓝色的星星", "A Red CIRCLE!!", "左上角有一个很大的绿色圆形，白色背景", "", "x" * 300,
             "emoji 🐱 and 日本語のテキスト", "Ünïcödé café"]
    embedder = Embedder(parse_model_spec("bundled"), device="cpu")
    assert export_text_encoder(embedder, tmp_path)
    note = json.loads((tmp_path / NOTE_FILE).read_text())
    ours = load_tokenizer(note["tokenizer"], tmp_path, int(note["context_length"]))
    np.testing.assert_array_equal(ours(texts), embedder.tokenizer()(texts).numpy())
    fast = OnnxTextEncoder.for_index(tmp_path, embedder.identity).embed_texts(texts)
    assert ((fast * embedder.embed_texts(texts)).sum(axis=1) >= 0.999).all()
