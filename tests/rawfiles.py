"""Camera RAW files for tests and benchmarks: DNGs written with tifffile from Bayer arrays.

A picture (an RGB array) is linearised and sampled through an RGGB colour filter, as a sensor
would see it, and stored as a DNG that LibRaw demosaics back; optionally with the camera's
preview (a JPEG, or an uncompressed RGB bitmap) in IFD0 and the sensor data in a SubIFD, as
cameras and converters write them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

WHITE = 4095  # a 12-bit sensor

# Identity matrices (DNG SRATIONALs as numerator, denominator): camera RGB is taken as sRGB.
_IDENTITY = (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)


def bayer_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """The RGGB mosaic a 12-bit linear sensor records of an 8-bit sRGB-ish picture."""
    lin = (np.asarray(rgb, dtype=np.float64) / 255.0) ** 2.2 * WHITE
    h, w = lin.shape[:2]
    cfa = np.zeros((h - h % 2, w - w % 2), np.uint16)
    cfa[0::2, 0::2] = lin[0:cfa.shape[0]:2, 0:cfa.shape[1]:2, 0]
    cfa[0::2, 1::2] = lin[0:cfa.shape[0]:2, 1:cfa.shape[1]:2, 1]
    cfa[1::2, 0::2] = lin[1:cfa.shape[0]:2, 0:cfa.shape[1]:2, 1]
    cfa[1::2, 1::2] = lin[1:cfa.shape[0]:2, 1:cfa.shape[1]:2, 2]
    return cfa


def jpeg_bytes(img: Image.Image, exif: Image.Exif | None = None, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def write_dng(path: str | Path, picture: Image.Image | np.ndarray, preview: Image.Image | None = None,
              preview_format: str = "jpeg", preview_exif: Image.Exif | None = None, orientation: int = 1,
              make: str = "Acme", model: str = "Raw One", taken: str | None = "2021:05:06 07:08:09") -> Path:
    """Write a DNG of ``picture`` (its sensor data) with an optional ``preview``.

    Args:
        preview_format: ``jpeg`` (compressed, as cameras write them, with ``preview_exif`` in it)
            or ``bitmap`` (uncompressed 8-bit RGB).
        orientation: the TIFF orientation tag (1, 3, 6 or 8); pixels are stored unrotated.
        taken: TIFF DateTime ("YYYY:MM:DD HH:MM:SS"), or None for none.
    """
    import tifffile

    rgb = np.asarray(picture.convert("RGB") if isinstance(picture, Image.Image) else picture)
    cfa = bayer_from_rgb(rgb)
    common = [(271, "s", 0, make, True), (272, "s", 0, model, True), (274, "H", 1, orientation, True)]
    if taken:
        common.append((306, "s", 0, taken, True))
    dng = [(50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, f"{make} {model}", True),
           (50721, "2i", 9, _IDENTITY, True), (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True)]
    sensor = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),
              (50714, "H", 1, 0, True), (50717, "H", 1, WHITE, True)]
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=common + dng + sensor)
        elif preview_format == "bitmap":
            tif.write(np.asarray(preview.convert("RGB")), photometric="rgb", subfiletype=1, subifds=1,
                      extratags=common + dng)
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=sensor)
        else:
            _write_jpeg_page(tif, preview, preview_exif, common + dng)
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=sensor)
    return Path(path)


def _write_jpeg_page(tif, preview: Image.Image, exif: Image.Exif | None, extratags: list) -> None:
    """IFD0 as a JPEG-compressed preview: the JPEG's bytes are the page's one strip, written as they
    are (tifffile needs a JPEG codec registered only to accept the tag; it never calls it)."""
    import tifffile

    codecs = tifffile.TIFF.COMPRESSORS._codecs
    saved = codecs.get(7)
    codecs[7] = lambda *a, **k: None
    try:
        w, h = preview.size
        tif.write(iter([jpeg_bytes(preview, exif)]), shape=(h, w, 3), dtype=np.uint8, compression=7,
                  photometric="ycbcr", subsampling=(1, 1), rowsperstrip=h, subfiletype=1, subifds=1,
                  extratags=extratags)
    finally:
        if saved is None:
            codecs.pop(7, None)
        else:
            codecs[7] = saved


def gps_exif(lat: float, lon: float) -> Image.Exif:
    """An EXIF block holding only a GPS position."""
    from tests.conftest import make_exif

    return make_exif(gps=(lat, lon))
