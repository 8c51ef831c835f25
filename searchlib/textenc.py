"""A torch-free text encoder: the model's text tower exported to ONNX, run by onnxruntime.

A search in a new process then pays for onnxruntime and this file instead of ``import torch`` and
the whole model. The export lives in the index directory beside a JSON note naming the model it
came from, its tokenizer and the file's checksum; a note that is unreadable, names another model,
or whose checksum does not match means the export is not used (the full model answers, and the
export is made again). Outputs match open_clip's ``encode_text`` (cosine >= 0.999, tested).

Exports are also kept per model in the user cache (``SEARCHLIB_CACHE``), so a second index of the
same model copies the file instead of exporting again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np

from .backends import cache_dir, mha_fastpath_off
from .locks import cache_lock
from .models import ModelIdentity
from .tokenizing import TOKENIZER_FILES, load_tokenizer, save_tokenizer, tokenizer_kind
from .vectors import checksum, file_checksum

log = logging.getLogger(__name__)

ONNX_FILE = "text_encoder.onnx"
NOTE_FILE = "text_encoder.json"


def _key(identity: ModelIdentity) -> dict:
    return {"arch": identity.arch, "pretrained": identity.pretrained,
            "weights_sha256": identity.weights_sha256, "dim": identity.dim}


def cache_folder(identity: ModelIdentity) -> Path:
    """Where exports of this model are kept in the user cache (``SEARCHLIB_CACHE``)."""
    import hashlib

    key = hashlib.sha256(json.dumps(_key(identity), sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "text" / f"{identity.arch}-{key}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half written)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def _export_onnx(embedder, folder: Path, context_length: int) -> None:
    """Export the text tower of ``embedder`` into ``folder`` (ONNX file, tokenizer files, note)."""
    import torch

    identity = embedder.identity
    model = embedder.reference_model()

    class TextTower(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, tokens):
            return self.clip.encode_text(tokens)

    tokenizer = embedder.tokenizer()
    tokens = torch.as_tensor(np.asarray(tokenizer(["a photo"])), dtype=torch.long)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ONNX_FILE}.{os.getpid()}.tmp"
    was_device = embedder.device
    try:
        tower = TextTower(model).to("cpu").float().eval()
        with torch.no_grad(), mha_fastpath_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes about ops it rewrites
            torch.onnx.export(tower, (tokens,), str(tmp), input_names=["tokens"], output_names=["embedding"],
                              dynamic_axes={"tokens": {0: "batch"}, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        optimize_onnx(tmp)
        os.replace(tmp, folder / ONNX_FILE)
    finally:
        tmp.unlink(missing_ok=True)
        model.to(was_device)
    kind = save_tokenizer(tokenizer, tokenizer_kind(identity.arch), folder)
    note = {**_key(identity), "context_length": context_length, "tokenizer": kind, "optimized": True,
            "checksum": checksum(np.fromfile(folder / ONNX_FILE, dtype=np.uint8))}
    atomic_write_text(folder / NOTE_FILE, json.dumps(note))


def export_text_encoder(embedder, directory: Path) -> bool:
    """Put ``embedder``'s text tower (ONNX) and tokenizer into ``directory``; False if unsupported.

    Exported once per model into the user cache and copied from there.
    """
    from .tokenizing import context_length_of

    identity = embedder.identity
    kind = tokenizer_kind(identity.arch)
    if kind is None:
        return False
    cached = cache_folder(identity)
    note = _read_note(cached, identity)
    if note is not None and file_checksum(cached / ONNX_FILE) != note["checksum"]:
        log.warning("the cached text tower in %s is damaged: exporting it again", cached)
        remove_export(cached)
    if _read_note(cached, identity) is None:
        cached.mkdir(parents=True, exist_ok=True)
        with cache_lock(cached, wait=600) as locked:
            if locked and _read_note(cached, identity) is None:
                log.info("exporting the text tower of %s (once per model)", identity.name)
                _export_onnx(embedder, cached, context_length_of(identity.arch))
    if _read_note(cached, identity) is None:  # an unwritable cache: export straight into the index
        _export_onnx(embedder, directory, context_length_of(identity.arch))
        return True
    with cache_lock(directory) as locked:
        if not locked:
            return False
        names = [ONNX_FILE, *TOKENIZER_FILES.get(_read_note(cached, identity)["tokenizer"], ())]
        for name in names:
            tmp = directory / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(cached / name, tmp)
            os.replace(tmp, directory / name)
        atomic_write_text(directory / NOTE_FILE, (cached / NOTE_FILE).read_text())
    log.info("text tower of %s is in %s", identity.name, directory / ONNX_FILE)
    return True


def optimize_onnx(path: Path) -> None:
    """Rewrite the graph with onnxruntime's portable (extended) optimizations applied once, so a
    cold query skips them when it loads the file (271 ms instead of 485 ms for ViT-B-32's tower)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path) + ".opt"
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    os.replace(str(path) + ".opt", path)


def _read_note(directory: Path, identity: ModelIdentity) -> dict | None:
    """The note of an export in ``directory`` if it is whole and made from ``identity``'s model."""
    try:
        note = json.loads((directory / NOTE_FILE).read_text())
        if not isinstance(note, dict) or {k: note.get(k) for k in _key(identity)} != _key(identity):
            return None
        int(note["context_length"])
        if not str(note.get("checksum")).startswith("xxh3_128:") or not (directory / ONNX_FILE).is_file():
            return None  # no checksum, or one from an older searchlib: export again
        if note.get("tokenizer") not in ("clip-bpe", "hf", "sentencepiece"):
            return None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return note


def read_export_note(directory: Path, identity: ModelIdentity) -> dict | None:
    """The note of a usable export in ``directory`` for this model (None if there is none)."""
    return _read_note(directory, identity)


def read_checksum(directory: Path) -> str | None:
    """The checksum the note in ``directory`` records for the ONNX file."""
    try:
        return json.loads((directory / NOTE_FILE).read_text()).get("checksum")
    except (OSError, ValueError, AttributeError):
        return None


def remove_export(directory: Path) -> None:
    """Delete the export in ``directory`` (the note first: a half-removed export is never used)."""
    for name in (NOTE_FILE, ONNX_FILE):
        (directory / name).unlink(missing_ok=True)


def export_is_current(directory: Path, identity: ModelIdentity) -> bool:
    """Whether ``directory`` holds a usable export for this model (its checksum is checked on load)."""
    return _read_note(directory, identity) is not None


class OnnxTextEncoder:
    """Embeds texts with the exported text tower; returns unit-norm float32 rows.

    Args:
        directory: the folder holding the tower and its tokenizer.
        note: the fp32 export's note (tokenizer, context length).
        file: which tower file: the fp32 export (:data:`ONNX_FILE`) or the int8 one
            (:data:`searchlib.textquant.INT8_FILE`).
        checksum: the checksum ``file`` must have (the note's for the fp32 file).
    """

    def __init__(self, directory: Path, note: dict, file: str = ONNX_FILE, checksum: str | None = None):
        import onnxruntime as ort

        self.file = file
        self.checksum = checksum or note["checksum"]
        self.tower = "fp32" if file == ONNX_FILE else "int8"

        options = ort.SessionOptions()
        if note.get("optimized"):  # optimized at export time: loading skips the graph passes
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: the vector search runs right after on the same cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The session loads (in C++, without the GIL) while the tokenizer builds its tables here.
        created: dict = {}

        def create() -> None:
            try:
                # From the path (onnxruntime maps it: faster than handing it bytes), then the
                # checksum, over pages the session just brought into the cache.
                session = ort.InferenceSession(str(directory / file), options,
                                               providers=["CPUExecutionProvider"])
                if file_checksum(directory / file) != self.checksum:
                    raise ValueError("the file does not match its checksum (damaged)")
                created["session"] = session
            except Exception as e:  # re-raised below, in the caller's thread
                created["error"] = e

        loader = threading.Thread(target=create, name="searchlib-load-text-encoder")
        loader.start()
        try:
            self.tokenizer = load_tokenizer(note["tokenizer"], directory, int(note["context_length"]))
        finally:
            loader.join()
        if "error" in created:
            raise created["error"]
        self.session = created["session"]

    @classmethod
    def for_index(cls, directory: Path, identity: ModelIdentity) -> OnnxTextEncoder | None:
        """The index's exported (fp32) encoder if present, whole and made from ``identity``'s
        model, else None. (:class:`searchlib.encoders.IndexModel` first tries the int8 tower,
        :func:`searchlib.textquant.load_int8`.)"""
        note = _read_note(directory, identity)
        if note is None:
            return None
        try:
            return cls(directory, note)
        except Exception as e:  # a damaged file: fall back to the torch path
            log.warning("cannot use %s (%s); using the full model", directory / ONNX_FILE, e)
            return None

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        from .vectormath import normalize

        if not texts:
            raise ValueError("no texts")
        tokens = self.tokenizer(list(texts))
        if self.tower == "int8":
            # Dynamic quantization scales activations per tensor, so a text's int8 vector would
            # depend on the other texts in its batch: one at a time, it is the same in every call
            # (the query vector cache and the gate rely on that).
            out = np.concatenate([self.session.run(None, {"tokens": tokens[i:i + 1]})[0] for i in range(len(tokens))])
        else:
            out = self.session.run(None, {"tokens": tokens})[0]
        return normalize(out)
