import numpy as np
import pytest
from PIL import Image

from searchlib.embedding import normalize, resolve_device
from searchlib.errors import ConfigError, ImageDecodeError


def test_normalize_gives_unit_float32_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float64)
    out = normalize(x)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0], [0.6, 0.8], atol=1e-6)


def test_normalize_accepts_a_single_vector():
    assert normalize(np.ones(4)).shape == (1, 4)


def test_text_vectors_are_unit_norm_and_deterministic(tiny_embedder):
    a = tiny_embedder.embed_texts(["a red circle", "a blue square"])
    b = tiny_embedder.embed_texts(["a red circle"])
    assert a.shape == (2, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    assert tiny_embedder.embed_texts([]).shape == (0, 32)


def test_image_vectors_match_open_clip_preprocessing(tiny_embedder, tmp_path):
    """Our uint8 path (resize/crop in Pillow, normalize on device) equals open_clip's transform."""
    import open_clip
    import torch

    rng = np.random.default_rng(1)
    paths = []
    for i, size in enumerate([(90, 50), (50, 90), (32, 32), (300, 200)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    ours = tiny_embedder.embed_images(paths)
    model = tiny_embedder._load()
    preprocess = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    with torch.inference_mode():
        x = torch.stack([preprocess(Image.open(p)) for p in paths])
        ref = normalize(model.encode_image(x).numpy())
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.9999, cos


def test_embed_images_reports_unreadable_files(tiny_embedder, tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read"):
        tiny_embedder.embed_images([tmp_path / "missing.jpg"])
    bad = tmp_path / "bad.jpg"
    bad.write_text("<html>not an image</html>")
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        tiny_embedder.embed_images([bad])


def test_device_choices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_cuda_request_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
