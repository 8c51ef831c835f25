"""The model registry: which CLIP models searchlib can load and how a model is named.

A *model spec* is a string:

* ``bundled`` — the small CLIP model trained by this project and shipped inside the package
  (works offline; see ``searchlib train``).
* ``ARCH/TAG`` — an open_clip architecture and pretrained tag, e.g. ``ViT-B-32/laion2b_s34b_b79k``;
  open_clip downloads the weights into its cache on first use.
* ``ARCH`` together with a local checkpoint file (``--checkpoint FILE``; safetensors preferred).
* ``ARCH/random`` — seeded random weights. Useless for search; meant for tests and benchmarks,
  where cost does not depend on weights.

This module holds names and files only; it never imports torch, so listing models stays fast.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, ModelUnavailableError

#: Tag that asks for seeded random-init weights (tests and benchmarks only).
RANDOM_TAG = "random"
#: Name of the model shipped in the package.
BUNDLED_NAME = "bundled"

PACKAGE_DIR = Path(__file__).resolve().parent
#: open_clip JSON configs of the project's own architectures (the bundled model, tiny test models).
MODEL_CONFIG_DIR = PACKAGE_DIR / "model_configs"
BUNDLED_DIR = PACKAGE_DIR / "bundled"
BUNDLED_ARCH = "searchlib-mini"
BUNDLED_WEIGHTS = BUNDLED_DIR / "searchlib-mini.safetensors"

#: Models shown by ``searchlib models`` besides the bundled one: good choices for photo search.
RECOMMENDED = (
    "ViT-B-32/laion2b_s34b_b79k",
    "ViT-B-16/laion2b_s34b_b88k",
    "ViT-L-14/laion2b_s32b_b82k",
    "ViT-B-16-SigLIP/webli",
    "MobileCLIP-S2/datacompdr",
)


@dataclass(frozen=True)
class ModelSpec:
    """What to load: an architecture plus where its weights come from.

    Attributes:
        arch: open_clip architecture name (``ViT-B-32``) or one of the project's configs.
        pretrained: open_clip pretrained tag, ``"random"``, or None when ``checkpoint`` is set.
        checkpoint: local weights file (absolute), or None.
        name: the name users see and the index records (``bundled``, ``ViT-B-32/laion2b...``).
    """

    arch: str
    pretrained: str | None = None
    checkpoint: Path | None = None
    name: str = ""

    @property
    def is_random(self) -> bool:
        return self.pretrained == RANDOM_TAG


def parse_model_spec(spec: str | None, checkpoint: str | os.PathLike | None = None) -> ModelSpec:
    """Turn a user's ``--model``/``--checkpoint`` pair into a :class:`ModelSpec`.

    Raises:
        ModelError: the spec is malformed, or the checkpoint file does not exist.
    """
    from .config import DEFAULT_MODEL

    if checkpoint is not None:
        path = Path(checkpoint).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"checkpoint file not found: {path}")
        arch = (spec or "").strip()
        if not arch or "/" in arch or arch == BUNDLED_NAME:
            raise ModelError(
                f"--checkpoint needs --model ARCH naming the architecture (e.g. ViT-B-32), got {spec!r}"
            )
        return ModelSpec(arch=arch, checkpoint=path, name=f"{arch}:{path.name}")
    spec = (spec or DEFAULT_MODEL).strip()
    if spec == BUNDLED_NAME:
        return ModelSpec(arch=BUNDLED_ARCH, checkpoint=BUNDLED_WEIGHTS, name=BUNDLED_NAME)
    arch, sep, tag = spec.partition("/")
    if not sep or not arch or not tag:
        raise ModelError(
            f"model spec {spec!r} is not ARCH/TAG (e.g. {DEFAULT_MODEL}), 'bundled', "
            "or ARCH with --checkpoint FILE; run 'searchlib models' to list them"
        )
    return ModelSpec(arch=arch, pretrained=tag, name=spec)


def register_project_configs() -> None:
    """Make open_clip aware of the project's own architecture configs (idempotent)."""
    import open_clip

    known = set(open_clip.list_models())
    if not all(p.stem in known for p in MODEL_CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a whole file (weights identity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pretrained_cache_file(arch: str, tag: str) -> Path | None:
    """The locally cached weights file of an open_clip ``arch/tag``, or None if not cached."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        return None
    hub = (cfg.get("hf_hub") or "").rstrip("/")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(hub, filename)
            if isinstance(found, str):
                return Path(found)
        return None
    url = cfg.get("url") or ""
    if url:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
        candidate = cache / os.path.basename(url)
        return candidate if candidate.is_file() else None
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers; checked first so offline users wait seconds, not a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    hostname, _, port = host.partition(":")
    try:
        with socket.create_connection((hostname, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def check_pretrained(arch: str, tag: str) -> None:
    """Fail early and clearly when ``arch/tag`` is unknown or cannot be had right now.

    Raises:
        ModelError: open_clip knows no such architecture or tag.
        ModelUnavailableError: the weights are not cached and the hub cannot be reached.
    """
    import open_clip

    register_project_configs()
    if arch not in open_clip.list_models():
        raise ModelError(f"unknown model architecture {arch!r}; run 'searchlib models --all' to list them")
    if tag == RANDOM_TAG:
        return
    if not open_clip.get_pretrained_cfg(arch, tag):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ModelError(f"unknown pretrained tag {tag!r} for {arch} (known: {tags})")
    if pretrained_cache_file(arch, tag) is None and not hub_reachable():
        raise ModelUnavailableError(
            f"weights for {arch}/{tag} are not cached and cannot be downloaded (offline): "
            "connect once to download them, pass --checkpoint FILE, or use --model bundled"
        )


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``searchlib models``."""

    name: str
    available_offline: bool
    note: str


def list_models(include_all: bool = False) -> list[ModelInfo]:
    """Known models and whether each can be loaded without a network."""
    import open_clip

    rows = [
        ModelInfo(
            BUNDLED_NAME,
            BUNDLED_WEIGHTS.is_file(),
            "shipped with searchlib; trained on synthetic shapes (offline demo and tests)",
        )
    ]
    names = list(RECOMMENDED)
    if include_all:
        names += [f"{a}/{t}" for a, t in open_clip.list_pretrained() if f"{a}/{t}" not in names]
    for name in names:
        arch, _, tag = name.partition("/")
        cached = pretrained_cache_file(arch, tag) is not None
        rows.append(ModelInfo(name, cached, "cached" if cached else "downloads on first use"))
    return rows


@dataclass(frozen=True)
class ModelIdentity:
    """Everything that makes two models' vectors comparable; stored in every index.

    Attributes:
        name: the spec users see (``bundled``, ``ViT-B-32/laion2b_s34b_b79k``, ``ARCH:file``).
        arch: open_clip architecture.
        pretrained: open_clip tag or ``random``; None for checkpoints.
        checkpoint: absolute path of the weights file the index was built with, or None.
        weights_sha256: hash of that file (None for pretrained tags, which name their weights).
        dim: embedding dimension.
        image_size: square input side in pixels.
        mean, std: per-channel normalization.
        interpolation: resize filter (``bicubic``, ``bilinear``).
        resize_mode: ``shortest`` (resize + center crop), ``squash`` or ``longest`` (pad).
    """

    name: str
    arch: str
    pretrained: str | None
    checkpoint: str | None
    weights_sha256: str | None
    dim: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelIdentity:
        fields = dict(data)
        fields["mean"] = tuple(fields["mean"])
        fields["std"] = tuple(fields["std"])
        return cls(**{k: fields.get(k) for k in cls.__dataclass_fields__})

    def _key(self) -> tuple:
        return (self.arch, self.pretrained, self.weights_sha256, self.dim, self.image_size,
                tuple(round(m, 6) for m in self.mean), tuple(round(s, 6) for s in self.std),
                self.interpolation, self.resize_mode)

    def same_model(self, other: ModelIdentity) -> bool:
        """True when vectors from both models live in the same space (same weights, same inputs)."""
        return self._key() == other._key()

    def describe(self) -> str:
        """Short human name including the weights hash prefix for checkpoints."""
        if self.weights_sha256 and self.name != BUNDLED_NAME:
            return f"{self.name} (sha256 {self.weights_sha256[:12]})"
        return self.name

    def to_spec(self) -> ModelSpec:
        """The spec that loads this model again (used by search, which never needs ``--model``)."""
        if self.name == BUNDLED_NAME:
            return parse_model_spec(BUNDLED_NAME)
        if self.checkpoint:
            path = Path(self.checkpoint)
            if not path.is_file():
                raise ModelUnavailableError(
                    f"the index was built with checkpoint {path}, which no longer exists; "
                    "restore the file or re-index with another model into a new index"
                )
            return ModelSpec(arch=self.arch, checkpoint=path, name=self.name)
        return ModelSpec(arch=self.arch, pretrained=self.pretrained, name=self.name)
