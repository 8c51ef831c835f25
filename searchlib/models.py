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
import importlib.util
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
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
BUNDLED_ARCH = "searchlib-bilingual"
BUNDLED_WEIGHTS = BUNDLED_DIR / "searchlib-bilingual.safetensors"

#: Models shown by ``searchlib models`` besides the bundled one: good choices for photo search.
RECOMMENDED = (
    "ViT-B-32/laion2b_s34b_b79k",
    "ViT-B-16/laion2b_s34b_b88k",
    "ViT-L-14/laion2b_s32b_b82k",
    "ViT-B-16-SigLIP/webli",
    "MobileCLIP-S2/datacompdr",
    # Multilingual: queries in any language (see searchlib.languages).
    "xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k",
    "nllb-clip-base-siglip/v1",
    "ViT-B-16-SigLIP-i18n-256/webli",
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


#: In the project's configs, this tokenizer name stands for the tokenizer shipped with the bundled
#: model (an absolute path is only known at run time).
BUNDLED_TOKENIZER_MARK = "@bundled-tokenizer"
BUNDLED_TOKENIZER = BUNDLED_DIR / "tokenizer"


def _resolved(config: dict) -> dict:
    text = config.get("text_cfg", {})
    if text.get("hf_tokenizer_name") == BUNDLED_TOKENIZER_MARK:
        config = {**config, "text_cfg": {**text, "hf_tokenizer_name": str(BUNDLED_TOKENIZER)}}
    return config


_registered: list[str] = []


def config_dirs() -> list[Path]:
    """Folders of open_clip architecture configs (JSON): the project's own, then any named in
    ``$SEARCHLIB_MODEL_CONFIGS`` (``os.pathsep``-separated) for local architectures."""
    extra = [Path(p).expanduser() for p in os.environ.get("SEARCHLIB_MODEL_CONFIGS", "").split(os.pathsep) if p]
    return [MODEL_CONFIG_DIR, *extra]


def register_project_configs() -> None:  # imports open_clip: only where the model is needed
    """Make open_clip aware of the project's own architecture configs (idempotent).

    The configs are written, resolved, into a folder of this process (the bundled tokenizer's path
    is filled in) and added to open_clip's registry from there.
    """
    import json
    import tempfile

    import open_clip

    known = set(open_clip.list_models())
    configs = [p for d in config_dirs() for p in sorted(d.glob("*.json"))]
    if _registered and all(p.stem in known for p in configs):
        return
    folder = Path(tempfile.mkdtemp(prefix="searchlib-configs-"))
    for path in configs:
        (folder / path.name).write_text(json.dumps(_resolved(json.loads(path.read_text()))))
    open_clip.add_model_config(folder)
    _registered.append(str(folder))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a whole file (weights identity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- open_clip's registry, read without importing open_clip ----------------------------------
# ``import open_clip`` costs seconds (it imports torch, timm and more): listing models or telling
# an offline user that weights are missing must not pay that. The registry is data: the JSON
# configs in open_clip's model_configs folder and the table in open_clip/pretrained.py, which
# imports nothing heavy once ``safetensors.torch`` is hidden from it.


def _open_clip_dir() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("open_clip is not installed: pip install open_clip_torch")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _pretrained_registry():
    """open_clip's ``pretrained`` module, loaded on its own (no torch)."""
    import sys
    import types

    if "open_clip" in sys.modules:  # already imported by someone: use it
        return importlib.import_module("open_clip.pretrained")
    folder = _open_clip_dir()
    package = types.ModuleType("_searchlib_open_clip")
    package.__path__ = [str(folder)]
    saved = {name: sys.modules.get(name) for name in ("_searchlib_open_clip", "safetensors.torch")}
    sys.modules["_searchlib_open_clip"] = package
    sys.modules["safetensors.torch"] = None  # type: ignore[assignment]  # makes its optional import fail
    try:
        spec = importlib.util.spec_from_file_location("_searchlib_open_clip.pretrained", folder / "pretrained.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


def known_architectures() -> set[str]:
    """open_clip's architecture names and the project's own (from their JSON configs)."""
    names = {p.stem for p in (_open_clip_dir() / "model_configs").glob("*.json")}
    return names | {p.stem for d in config_dirs() for p in d.glob("*.json")}


def architecture_config(arch: str) -> dict:
    """The JSON config of an architecture ({} if unknown), read without open_clip."""
    import json

    for folder in (*config_dirs(), _open_clip_dir() / "model_configs"):
        path = folder / f"{arch}.json"
        if path.is_file():
            return _resolved(json.loads(path.read_text()))
    return {}


def pretrained_cfg(arch: str, tag: str) -> dict:
    return _pretrained_registry().get_pretrained_cfg(arch, tag) or {}


def list_pretrained() -> list[tuple[str, str]]:
    return list(_pretrained_registry().list_pretrained())


def _hub_cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    repo = repo.strip("/")
    if repo.count("/") > 1:  # some entries name a file inside the repo
        repo, _, filename = repo.rpartition("/")
    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:  # an id the hub client rejects: treat as not cached
        return None
    return Path(found) if isinstance(found, str) else None


def pretrained_cache_file(arch: str, tag: str) -> Path | None:
    """The locally cached weights file of an open_clip ``arch/tag``, or None if not cached."""
    cfg = pretrained_cfg(arch, tag)
    if not cfg:
        return None
    hub = (cfg.get("hf_hub") or "").rstrip("/")
    if hub:
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = _hub_cached(hub, filename)
            if found is not None:
                return found
        return None
    url = cfg.get("url") or ""
    if url:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
        candidate = cache / os.path.basename(url)
        return candidate if candidate.is_file() else None
    return None


def _text_tower_files_cached(arch: str) -> bool:
    """Whether a Hugging Face text tower's config and tokenizer (if the arch has one) are cached."""
    text = architecture_config(arch).get("text_cfg", {})
    for repo in {text.get("hf_model_name"), text.get("hf_tokenizer_name")} - {None, ""}:
        if Path(repo).is_dir():  # a local folder
            continue
        if _hub_cached(repo, "config.json") is None and _hub_cached(repo, "tokenizer_config.json") is None:
            return False
    return True


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
    if arch not in known_architectures():
        raise ModelError(f"unknown model architecture {arch!r}; run 'searchlib models --all' to list them")
    if tag == RANDOM_TAG:
        return
    if not pretrained_cfg(arch, tag):
        tags = ", ".join(_pretrained_registry().list_pretrained_tags_by_model(arch)) or "none"
        raise ModelError(f"unknown pretrained tag {tag!r} for {arch} (known: {tags})")
    cached = pretrained_cache_file(arch, tag) is not None and _text_tower_files_cached(arch)
    if not cached and not hub_reachable():
        raise ModelUnavailableError(
            f"the weights of {arch}/{tag} are not cached ({hub_cache_dir()}) and cannot be downloaded "
            f"(offline): copy that cache from a machine that has them, or use local weights with "
            f"--model {arch} --checkpoint FILE, or the offline model with --model bundled")


def hub_cache_dir() -> str:
    """Where Hugging Face downloads go (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.expanduser(os.path.join(home, "hub"))


def ensure_available(spec: ModelSpec) -> None:
    """Check, without loading anything, that ``spec`` can be loaded on this machine now.

    Raises:
        ModelError: unknown architecture or tag, or missing local weights.
        ModelUnavailableError: the weights must be downloaded and the network is unreachable.
    """
    if spec.checkpoint is not None:
        if not spec.checkpoint.is_file():
            raise ModelUnavailableError(f"weights file not found: {spec.checkpoint}")
        if spec.arch not in known_architectures():
            raise ModelError(f"unknown model architecture {spec.arch!r}; run 'searchlib models --all'")
        return
    check_pretrained(spec.arch, spec.pretrained or "")


def spec_matches(spec: ModelSpec, stored: ModelIdentity) -> None:
    """Raise :class:`ModelMismatchError` when ``spec`` names other weights than the index's model
    (decided from names and file hashes, without loading the model)."""
    from .errors import ModelMismatchError

    if spec.checkpoint is not None:
        same = spec.arch == stored.arch and stored.weights_sha256 == file_sha256(spec.checkpoint)
    else:
        same = (spec.arch, spec.pretrained) == (stored.arch, stored.pretrained) and not stored.weights_sha256
    if not same:
        raise ModelMismatchError(
            f"this index was built with model {stored.describe()}, not {spec.name}; "
            "use the index's model (omit --model) or a new --index directory")


# -- identities of models loaded before ------------------------------------------------------
# Loading a model only to learn its identity (input size, normalization) costs seconds of torch
# import; identities are remembered per spec in the user cache, so later runs skip that.


def _spec_key(spec: ModelSpec) -> str:
    weights = file_sha256(spec.checkpoint) if spec.checkpoint else spec.pretrained
    return hashlib.sha256(f"{spec.arch}|{weights}".encode()).hexdigest()[:24]


def cached_identity(spec: ModelSpec) -> ModelIdentity | None:
    """The identity of ``spec`` recorded when it was last loaded, if any."""
    import json

    from .config import cache_dir

    try:
        data = json.loads((cache_dir() / "identities" / f"{_spec_key(spec)}.json").read_text())
        ident = ModelIdentity.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if (ident.arch, ident.name) != (spec.arch, spec.name):
        return None
    return ident


def remember_identity(spec: ModelSpec, identity: ModelIdentity) -> None:
    """Record ``identity`` for ``spec`` (best effort: an unwritable cache only costs time later)."""
    import json

    from .config import cache_dir

    folder = cache_dir() / "identities"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{_spec_key(spec)}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(identity.to_dict()))
        os.replace(tmp, folder / f"{_spec_key(spec)}.json")
    except OSError:
        pass


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``searchlib models``."""

    name: str
    available_offline: bool
    note: str
    languages: str = "English"


def list_models(include_all: bool = False) -> list[ModelInfo]:
    """Known models and whether each can be loaded without a network (no torch is imported)."""
    from .languages import languages_of

    rows = [
        ModelInfo(
            BUNDLED_NAME,
            BUNDLED_WEIGHTS.is_file(),
            "shipped with searchlib; trained on synthetic shapes (offline demo and tests)",
            languages_of(BUNDLED_ARCH).label,
        )
    ]
    names = list(RECOMMENDED)
    if include_all:
        names += [f"{a}/{t}" for a, t in list_pretrained() if f"{a}/{t}" not in names]
    for name in names:
        arch, _, tag = name.partition("/")
        cached = pretrained_cache_file(arch, tag) is not None and _text_tower_files_cached(arch)
        rows.append(ModelInfo(name, cached, "cached" if cached else "downloads on first use", languages_of(arch).label))
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
