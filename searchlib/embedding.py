"""Loading CLIP models and turning text and pixels into normalized vectors
(:func:`searchlib.vectormath.normalize`, the one place vectors are normalized)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import ConfigError, ImageDecodeError, ModelError, ModelMismatchError
from .imaging import Preprocess, decode_for_model
from .models import (
    RANDOM_TAG,
    ModelIdentity,
    ModelSpec,
    cached_identity,
    check_pretrained,
    file_sha256,
    register_project_configs,
    remember_identity,
)
from .vectormath import normalize  # noqa: F401  (re-exported: searchlib.embedding.normalize)

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)


def gpu_device_present() -> bool:
    """Whether this machine shows an NVIDIA GPU (checked without importing torch)."""
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.environ.get("SEARCHLIB_ASSUME_GPU") == "1"


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; validates explicit choices.

    Without a GPU device node, ``auto`` is ``cpu`` without importing torch (which costs seconds).
    """
    device = (device or "auto").lower()
    if device == "cpu":
        return device
    if device == "auto" and not gpu_device_present():
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
        return device
    raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")


def load_state_dict(path: Path) -> dict:
    """Read a checkpoint safely: safetensors, else ``torch.load(weights_only=True)``."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    for key in ("state_dict", "model"):  # open_clip training checkpoints, searchlib train checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} holds no state dict")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


class _RouteOpenClipWarnings(logging.Filter):
    """open_clip warns through the root logger (``No pretrained weights loaded ...``), which Python
    prints to stderr when the application configured no logging: the library must not print. Its
    records go to searchlib's logger at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "open_clip" in (record.pathname or ""):
            log.info("open_clip: %s", record.getMessage())
            return False
        return True


def _create_model(spec: ModelSpec) -> torch.nn.Module:
    root = logging.getLogger()
    route = _RouteOpenClipWarnings()
    root.addFilter(route)
    try:
        return _create_model_quietly(spec)
    finally:
        root.removeFilter(route)


def _create_model_quietly(spec: ModelSpec) -> torch.nn.Module:
    import open_clip
    import torch

    register_project_configs()
    if spec.arch not in open_clip.list_models():
        raise ModelError(f"unknown model architecture {spec.arch!r}; run 'searchlib models --all'")
    # A checkpoint or random weights: never fetch a Hugging Face / timm tower's base weights (the
    # checkpoint holds them all, and offline they cannot be fetched).
    no_base = {"pretrained_text": False, "pretrained_image": False}
    if spec.checkpoint is not None:
        model = open_clip.create_model(spec.arch, pretrained=None, **no_base)
        state = load_state_dict(spec.checkpoint)
        try:
            model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ModelError(f"checkpoint {spec.checkpoint} does not fit architecture {spec.arch}: {first}") from e
        return model
    if spec.pretrained == RANDOM_TAG:
        log.warning("model %s has random weights: fine for tests and benchmarks, useless for search", spec.name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same weights in every process, so an index stays searchable
            return open_clip.create_model(spec.arch, pretrained=None, **no_base)
    check_pretrained(spec.arch, spec.pretrained or "")
    try:
        return open_clip.create_model(spec.arch, pretrained=spec.pretrained, require_pretrained=True)
    except Exception as e:
        raise ModelError(f"cannot load {spec.name}: {type(e).__name__}: {e}") from e


def identity_of(spec: ModelSpec, model: torch.nn.Module) -> ModelIdentity:
    """The :class:`ModelIdentity` of a loaded model."""
    import open_clip

    pre = open_clip.get_model_preprocess_cfg(model)
    size = pre["size"]
    size = size[0] if isinstance(size, (tuple, list)) else size
    dim = int((open_clip.get_model_config(spec.arch) or {})["embed_dim"])
    return ModelIdentity(
        name=spec.name,
        arch=spec.arch,
        pretrained=spec.pretrained,
        checkpoint=str(spec.checkpoint) if spec.checkpoint else None,
        weights_sha256=file_sha256(spec.checkpoint) if spec.checkpoint else None,
        dim=dim,
        image_size=int(size),
        mean=tuple(float(m) for m in pre["mean"]),
        std=tuple(float(s) for s in pre["std"]),
        interpolation=str(pre.get("interpolation", "bicubic")),
        resize_mode=str(pre.get("resize_mode", "shortest")),
    )


class Embedder:
    """A loaded CLIP model that embeds texts and images into normalized float32 vectors.

    Weights load on first use. On CUDA the model runs under fp16 autocast; pixels travel as uint8
    and are scaled and normalized on the device.

    Args:
        spec: which model (see :func:`searchlib.models.parse_model_spec`).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per forward pass (default 256 on CUDA, 32 on CPU).
        expected: if given, the identity the loaded model must have (checked when weights load).
        backend: how the image tower runs (:mod:`searchlib.backends`); ``auto`` picks the fastest
            measured for the device.
    """

    def __init__(self, spec: ModelSpec, device: str = "auto", batch_size: int | None = None,
                 expected: ModelIdentity | None = None, backend: str = "auto"):
        from .backends import resolve_backend

        self.spec = spec
        self.expected = expected
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self._tower = None
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 32)
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        self._model = None
        self._tokenizer = None
        self._identity: ModelIdentity | None = None

    # -- loading -----------------------------------------------------------------------------
    # The weights load only when something needs them. The identity comes from the index
    # (``expected``) or from the identity cache of models loaded before, and on the CPU the image
    # tower runs from its cached ONNX export, so indexing with a model used before needs no torch.
    def _load(self):
        if self._model is not None:
            return self._model
        import open_clip
        import torch

        if self.device == "cpu" and os.environ.get("OMP_NUM_THREADS") is None:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        model = _create_model(self.spec)
        model.eval().requires_grad_(False)
        loaded = identity_of(self.spec, model)
        if self.expected is not None and not loaded.same_model(self.expected):
            raise self._mismatch(self.expected, loaded)
        self._identity = loaded
        remember_identity(self.spec, loaded)
        self._model = model.to(self.device)
        root = logging.getLogger()
        route = _RouteOpenClipWarnings()
        root.addFilter(route)
        try:
            self._tokenizer = open_clip.get_tokenizer(self.spec.arch)
        finally:
            root.removeFilter(route)
        log.info("loaded model %s on %s", loaded.describe(), self.device)
        return self._model

    def tokenizer(self):
        """open_clip's tokenizer for this model (loads the model if needed)."""
        self._load()
        return self._tokenizer

    def reference_model(self):
        """The eager PyTorch model (for fidelity checks against the chosen backend)."""
        return self._load()

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def identity(self) -> ModelIdentity:
        """The model's identity: known from the index or from earlier loads, else loaded."""
        if self._identity is None:
            self._identity = self.expected or cached_identity(self.spec)
        if self._identity is None:
            self._load()
        assert self._identity is not None
        return self._identity

    @property
    def preprocess(self) -> Preprocess:
        ident = self.identity
        return Preprocess(ident.image_size, ident.interpolation, ident.resize_mode)

    @staticmethod
    def _mismatch(stored: ModelIdentity, other: ModelIdentity) -> ModelMismatchError:
        return ModelMismatchError(
            f"this index was built with model {stored.describe()}, not {other.describe()}; "
            "use the index's model (omit --model) or a new --index directory")

    def check_matches(self, stored: ModelIdentity) -> None:
        """Raise :class:`ModelMismatchError` unless this model produces ``stored``'s vector space."""
        if not self.identity.same_model(stored):
            raise self._mismatch(stored, self.identity)

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _image_tower(self):
        if self._tower is None:
            from .backends import image_tower

            self._tower = image_tower(self.backend, self._load, self.identity, self.device)
        return self._tower

    # -- embedding ---------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns ``(len(texts), dim)`` unit-norm float32."""
        import torch

        model = self._load()
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        out = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(texts), 256):
                tokens = self._tokenizer(list(texts[start:start + 256])).to(self.device)
                out.append(model.encode_text(tokens).float().cpu().numpy())
        return normalize(np.concatenate(out))

    def embed_pixels(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embed a uint8 batch ``(N, S, S, 3)`` from :func:`searchlib.imaging.to_model_pixels`.

        ``pixels`` may also be a uint8 torch tensor, e.g. already on the model's device (from
        :class:`searchlib.devicedecode.DeviceJpegDecoder`).
        """
        if len(pixels) == 0:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        tower = self._image_tower()
        out = [tower(pixels[start:start + self.batch_size]) for start in range(0, len(pixels), self.batch_size)]
        return normalize(np.concatenate(out))

    def embed_mixed(self, on_device: torch.Tensor | None, host: Sequence[np.ndarray]) -> np.ndarray:
        """Embed a uint8 tensor ``on_device`` and then host uint8 images, as one batch.

        Rows of the result follow ``on_device``'s rows, then ``host``.
        """
        size = self.identity.image_size
        host_arr = np.stack(host) if len(host) else None
        if on_device is None or len(on_device) == 0:
            return self.embed_pixels(host_arr if host_arr is not None else np.zeros((0, size, size, 3), np.uint8))
        if host_arr is None:
            return self.embed_pixels(on_device)
        if on_device.device.type == "cpu":
            return self.embed_pixels(np.concatenate([on_device.numpy(), host_arr]))
        import torch

        moved = torch.from_numpy(host_arr).pin_memory().to(on_device.device, non_blocking=True)
        return self.embed_pixels(torch.cat([on_device, moved]))

    def embed_images(self, images: Iterable[ImageInput]) -> np.ndarray:
        """Embed images: file paths, encoded bytes, or ``PIL.Image`` objects.

        Files and bytes pass the same size guard as indexing
        (:func:`searchlib.imaging.check_decoded_size`).

        Raises:
            ImageDecodeError: one of them is not a readable image, or is too large.
        """
        prep = self.preprocess
        arrays = [image_pixels(item, prep) for item in images]
        if not arrays:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        return self.embed_pixels(np.stack(arrays))


#: What :meth:`Embedder.embed_images` and queries accept as an image.
ImageInput = Union[str, os.PathLike, bytes, "PILImage"]


def image_pixels(item: ImageInput, prep: Preprocess) -> np.ndarray:
    """The model's uint8 input for a path, encoded bytes or a ``PIL.Image``."""
    from PIL import Image

    if isinstance(item, Image.Image):
        from .imaging import to_model_pixels

        try:
            return to_model_pixels(item, prep, reduce=False)  # never draft() the caller's image
        except Exception as e:
            raise ImageDecodeError(f"cannot use this image ({type(e).__name__}: {e})") from e
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_for_model(bytes(item), prep)[0]
    from .media import decode_file_bytes  # a path: its ending may call for the RAW decoder

    return decode_file_bytes(os.fspath(item), read_image_file(item), prep)[0]


def read_image_file(path: str | os.PathLike) -> bytes:
    """Read a regular file whole (a FIFO or device is refused, never read).

    Raises:
        ImageDecodeError: missing, unreadable, or not a regular file.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ImageDecodeError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageDecodeError(f"{path} is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 22):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise ImageDecodeError(f"cannot read {path}: {e.strerror or e}") from e
    finally:
        os.close(fd)
