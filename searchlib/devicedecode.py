"""Batched JPEG decoding and CLIP preprocessing on the model's device.

On CUDA, :class:`DeviceJpegDecoder` decodes a list of JPEGs in one call to nvJPEG (through
``torchvision.io.decode_jpeg(device="cuda")``), applies the EXIF orientation, and resizes and crops
to the model's input on the GPU, so a 12 MP photo never crosses PCIe as pixels and the CPU only
reads and hashes the file. It reproduces the geometry of :func:`searchlib.imaging.to_model_pixels`
(open_clip's eval transform); the filter itself is PyTorch's antialiased bicubic in float, which
differs from Pillow's 8-bit passes by a fraction of a grey level (fidelity is measured in
``benchmarks/bench_index.py``).

On a CPU device the same class runs torchvision's CPU decoder: that is slower than the decode
workers (no DCT scaling) and exists so the path is exercised by tests on machines without a GPU.

Files the decoder rejects are returned as failures; the caller decodes them with Pillow instead,
so a file nvJPEG cannot handle is never lost.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .imaging import Preprocess
from .jpeginfo import jpeg_info

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Interpolations and resize modes the device path reproduces; others decode on the CPU.
DEVICE_INTERPOLATIONS = ("bicubic", "bilinear")
DEVICE_RESIZE_MODES = ("shortest", "squash", "longest")

#: Decoded pixels held on the device at once (bounds memory: 12 MP RGB is 36 MB as uint8).
MAX_DECODE_PIXELS = 256_000_000
#: Pixels converted to float for one resize call (4 bytes each).
MAX_RESIZE_PIXELS = 48_000_000


def device_decoding_supported(prep: Preprocess) -> bool:
    """Whether :class:`DeviceJpegDecoder` can reproduce this model's preprocessing."""
    return prep.interpolation in DEVICE_INTERPOLATIONS and prep.resize_mode in DEVICE_RESIZE_MODES


@dataclass
class DeviceDecodeResult:
    """Pixels for the files that decoded, in input order, and the reasons for those that did not."""

    pixels: torch.Tensor  # uint8 (len(ok), S, S, 3) on the decoder's device
    ok: list[int]  # input positions of the rows of ``pixels``
    failed: dict[int, str] = field(default_factory=dict)  # input position -> reason


def _orient(img: torch.Tensor, orientation: int | None) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a (3, H, W) tensor, as ``ImageOps.exif_transpose`` does."""
    if not orientation or orientation == 1:
        return img
    h, w = -2, -1
    if orientation == 2:
        return img.flip(w)
    if orientation == 3:
        return img.flip(h, w)
    if orientation == 4:
        return img.flip(h)
    if orientation == 5:  # transpose
        return img.transpose(h, w)
    if orientation == 6:  # rotate 90 degrees clockwise (PIL ROTATE_270)
        return img.rot90(-1, (h, w))
    if orientation == 7:  # transverse
        return img.transpose(h, w).flip(h, w)
    if orientation == 8:  # rotate 90 degrees counter-clockwise (PIL ROTATE_90)
        return img.rot90(1, (h, w))
    return img


class DeviceJpegDecoder:
    """Decode JPEG bytes to the model's uint8 input ``(N, S, S, 3)`` on ``device``.

    Args:
        prep: the model's geometry; must satisfy :func:`device_decoding_supported`.
        device: ``cuda`` (nvJPEG) or ``cpu`` (torchvision's libjpeg decoder; for tests).
    """

    def __init__(self, prep: Preprocess, device: str):
        if not device_decoding_supported(prep):
            raise ValueError(f"device decoding cannot reproduce {prep}")
        self.prep, self.device = prep, device

    # -- decoding ----------------------------------------------------------------------------
    def decode(self, datas: Sequence[bytes], orientations: Sequence[int | None] | None = None) -> DeviceDecodeResult:
        """Decode ``datas`` (JPEG file contents) and preprocess them for the model."""
        import torch

        orientations = orientations or [None] * len(datas)
        size = self.prep.image_size
        out = torch.empty((len(datas), size, size, 3), dtype=torch.uint8, device=self.device)
        done = [False] * len(datas)
        failed: dict[int, str] = {}
        for chunk in self._chunks(datas, failed):
            images = self._decode_chunk([datas[i] for i in chunk])
            decoded: list[tuple[int, torch.Tensor]] = []
            for i, img in zip(chunk, images):
                if isinstance(img, str):
                    failed[i] = img
                else:
                    decoded.append((i, _orient(img, orientations[i])))
            for rows, pixels in self._preprocess(decoded):
                out[rows] = pixels
                for r in rows:
                    done[r] = True
            del images, decoded
        ok = [i for i, d in enumerate(done) if d]
        pixels = out if len(ok) == len(datas) else out[torch.as_tensor(ok, dtype=torch.long, device=self.device)]
        return DeviceDecodeResult(pixels, ok, failed)

    def _chunks(self, datas: Sequence[bytes], failed: dict[int, str]) -> list[list[int]]:
        """Group inputs so that each decode call holds at most MAX_DECODE_PIXELS decoded pixels."""
        chunks: list[list[int]] = [[]]
        budget = 0
        for i, data in enumerate(datas):
            info = jpeg_info(data)
            if info is None or not info.device_decodable:
                failed[i] = "not a JPEG the device decoder handles"
                continue
            pixels = info.width * info.height
            if chunks[-1] and budget + pixels > MAX_DECODE_PIXELS:
                chunks.append([])
                budget = 0
            chunks[-1].append(i)
            budget += pixels
        return [c for c in chunks if c]

    def _decode_chunk(self, datas: list[bytes]) -> list:
        """Decoded (3, H, W) uint8 tensors, or a reason string where a file failed."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        if self.device.startswith("cuda"):
            # torchvision's CUDA decoder allocates its outputs on the caller's stream but writes
            # them from a stream of its own without waiting (pytorch/vision#9606): a block freed
            # while queued kernels still read it could be overwritten. Nothing may be pending.
            torch.cuda.current_stream().synchronize()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # frombuffer on bytes (never written) and deprecations
            tensors = [torch.frombuffer(d, dtype=torch.uint8) for d in datas]
            try:
                return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device))
            except Exception as e:  # one bad file fails the whole batch: find it
                log.debug("batched JPEG decode failed (%s); decoding one by one", e)
            results: list = []
            for t in tensors:
                try:
                    results.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=self.device))
                except Exception as e:
                    results.append(f"device JPEG decoder: {type(e).__name__}: {str(e).strip()[:200]}")
            return results

    # -- geometry ----------------------------------------------------------------------------
    def _target(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) after resizing, exactly as :func:`searchlib.imaging.to_model_pixels`."""
        size, mode = self.prep.image_size, self.prep.resize_mode
        if mode == "squash":
            return size, size
        if mode == "longest":
            scale = size / max(w, h)
            return max(1, round(h * scale)), max(1, round(w * scale))
        short, long = (w, h) if w <= h else (h, w)
        if short == size:
            return h, w
        new_long = int(size * long / short)
        return (new_long, size) if w <= h else (size, new_long)

    def _preprocess(self, decoded: list[tuple[int, torch.Tensor]]):
        """Yield (input positions, uint8 (n, S, S, 3)) for groups of equally sized images."""
        import torch

        groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
        for i, img in decoded:
            groups.setdefault(tuple(img.shape[-2:]), []).append((i, img))
        for (h, w), members in groups.items():
            per_call = max(1, MAX_RESIZE_PIXELS // (h * w))
            for start in range(0, len(members), per_call):
                part = members[start:start + per_call]
                batch = part[0][1][None] if len(part) == 1 else torch.stack([img for _, img in part])
                yield [i for i, _ in part], self._resize_crop(batch, h, w)

    def _resize_crop(self, batch: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """uint8 (n, 3, h, w) -> uint8 (n, S, S, 3) with the model's resize, then crop or pad."""
        import torch
        import torch.nn.functional as F

        size, mode = self.prep.image_size, self.prep.resize_mode
        th, tw = self._target(h, w)
        x = batch
        if (th, tw) != (h, w):
            x = x.float()
            # Separable: one axis at a time, as Pillow does (a 2-D antialiased kernel would cost
            # the product of both tap counts per output pixel instead of their sum).
            kwargs = {"mode": self.prep.interpolation, "antialias": True, "align_corners": False}
            if th != h:
                x = F.interpolate(x, size=(th, x.shape[-1]), **kwargs)
            if tw != w:
                x = F.interpolate(x, size=(th, tw), **kwargs)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        if mode == "shortest":
            x = self._center_crop(x, size)
        elif mode == "longest":
            canvas = torch.zeros((x.shape[0], 3, size, size), dtype=torch.uint8, device=x.device)
            top, left = (size - th) // 2, (size - tw) // 2
            canvas[:, :, top:top + th, left:left + tw] = x
            x = canvas
        return x.permute(0, 2, 3, 1)

    @staticmethod
    def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
        # torchvision CenterCrop: zero-pad when smaller, then crop with rounded offsets.
        import torch

        h, w = x.shape[-2:]
        if h < size or w < size:
            ph, pw = max(h, size), max(w, size)
            canvas = torch.zeros((x.shape[0], 3, ph, pw), dtype=x.dtype, device=x.device)
            top, left = (ph - h) // 2, (pw - w) // 2
            canvas[:, :, top:top + h, left:left + w] = x
            x, h, w = canvas, ph, pw
        top = int(round((h - size) / 2.0))
        left = int(round((w - size) / 2.0))
        return x[:, :, top:top + size, left:left + size]


def device_jpeg_available(device: str) -> bool:
    """Whether torchvision can decode JPEGs on ``device`` (nvJPEG present for CUDA)."""
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return False
    if not device.startswith("cuda"):
        return True
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    probe = buf.getvalue()  # fails fast where torchvision was built without nvJPEG
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decode_jpeg(torch.frombuffer(probe, dtype=torch.uint8), mode=ImageReadMode.RGB, device=device)
        return True
    except Exception as e:
        log.info("no JPEG decoding on %s (%s: %s); decoding on the CPU", device, type(e).__name__, e)
        return False
