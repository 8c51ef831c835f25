from datetime import datetime
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from searchlib.errors import ImageDecodeError
from searchlib.imaging import Preprocess, decode_for_model, open_image, read_metadata, to_model_pixels
from tests.conftest import make_exif


def _jpeg(size=(120, 80), exif=None, color=(200, 30, 30)) -> bytes:
    buf = BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", exif=exif if exif is not None else b"")
    return buf.getvalue()


def test_exif_metadata_is_read():
    data = _jpeg(exif=make_exif("2019:07:14 16:20:05", "Canon", "EOS 5D", 1, (48.8583, -2.2945)))
    meta = read_metadata(open_image(data))
    assert meta.taken_at == datetime(2019, 7, 14, 16, 20, 5)
    assert (meta.camera_make, meta.camera_model, meta.orientation) == ("Canon", "EOS 5D", 1)
    assert meta.gps_lat == pytest.approx(48.8583, abs=1e-4)
    assert meta.gps_lon == pytest.approx(-2.2945, abs=1e-4)
    assert (meta.width, meta.height, meta.format) == (120, 80, "JPEG")


def test_orientation_swaps_reported_size_and_rotates_pixels():
    img = Image.new("RGB", (120, 60), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 60, 60))  # left half red
    buf = BytesIO()
    img.save(buf, "PNG", exif=make_exif(orientation=6))  # 6: display rotated 90° clockwise
    meta = read_metadata(open_image(buf.getvalue()))
    assert (meta.width, meta.height, meta.orientation) == (60, 120, 6)
    pixels = to_model_pixels(open_image(buf.getvalue()), Preprocess(32, resize_mode="squash"))
    assert pixels[2, 16, 0] > 200 and pixels[-3, 16, 2] > 200  # red on top after rotation


def test_pixels_match_torchvision_resize_and_center_crop():
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    rng = np.random.default_rng(0)
    for w, h in [(97, 51), (51, 97), (224, 224), (20, 30)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ref = np.asarray(CenterCrop(32)(Resize(32, interpolation=InterpolationMode.BICUBIC)(img)))
        buf = BytesIO()
        img.save(buf, "PNG")
        ours = to_model_pixels(open_image(buf.getvalue()), Preprocess(32))
        assert ours.shape == (32, 32, 3) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "1"])
def test_modes_become_rgb(mode):
    if mode == "I;16":
        img = Image.new("I;16", (40, 40), 30000)
    else:
        img = Image.new("RGB", (40, 40), (10, 200, 30)).convert(mode)
    buf = BytesIO()
    img.save(buf, "TIFF" if mode in ("CMYK", "I;16") else "PNG")
    pixels, meta = decode_for_model(buf.getvalue(), Preprocess(16))
    assert pixels.shape == (16, 16, 3)


def test_bad_bytes_are_decode_errors():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_for_model(b"", Preprocess(16))
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_for_model(b"<html></html>", Preprocess(16))
    with pytest.raises(ImageDecodeError):
        decode_for_model(_jpeg()[:300], Preprocess(16))


def test_max_pixels_rejects_large_images():
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_for_model(_jpeg((400, 300)), Preprocess(16), max_pixels=100_000)


def test_reduced_jpeg_decode_stays_close_to_full_decode():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((1600, 1200), Image.Resampling.BICUBIC)
    buf = BytesIO()
    img.save(buf, "JPEG", quality=92)
    fast = decode_for_model(buf.getvalue(), Preprocess(64), reduce=True)[0].astype(float)
    full = decode_for_model(buf.getvalue(), Preprocess(64), reduce=False)[0].astype(float)
    assert np.abs(fast - full).mean() < 4.0
