"""A torch-free text encoder: the model's text tower exported to ONNX, run by onnxruntime.

A search in a new process then pays for onnxruntime and this file instead of ``import torch`` and
the whole model. The export lives in the index directory beside a JSON note naming the model it
came from; a note that does not match the index's model means the file is ignored (and replaced
at the next export). Outputs match open_clip's ``encode_text`` (cosine >= 0.999, tested).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from .backends import mha_fastpath_off
from .models import ModelIdentity

log = logging.getLogger(__name__)

ONNX_FILE = "text_encoder.onnx"
NOTE_FILE = "text_encoder.json"


def _key(identity: ModelIdentity) -> dict:
    return {"arch": identity.arch, "pretrained": identity.pretrained,
            "weights_sha256": identity.weights_sha256, "dim": identity.dim}


def supports_fast_text(arch: str) -> tuple[bool, int]:
    """Whether ``arch`` uses CLIP's BPE tokenizer (so no torch is needed), and its context length."""
    import open_clip

    from .models import register_project_configs

    register_project_configs()
    cfg = open_clip.get_model_config(arch) or {}
    text = cfg.get("text_cfg", {})
    plain = not text.get("hf_tokenizer_name") and not text.get("hf_model_name") \
        and text.get("tokenizer_kwargs", {}).get("clean", "lower") == "lower" \
        and not text.get("tokenizer_kwargs", {}).get("reduction_mask")
    return bool(plain and "vocab_size" in text), int(text.get("context_length", 77))


def export_text_encoder(embedder, directory: Path) -> bool:
    """Export ``embedder``'s text tower into ``directory`` (atomically); False if unsupported."""
    import torch

    identity = embedder.identity
    ok, context_length = supports_fast_text(identity.arch)
    if not ok:
        return False
    model = embedder._load()

    class TextTower(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, tokens):
            return self.clip.encode_text(tokens)

    tokens = torch.zeros((1, context_length), dtype=torch.long)
    tokens[0, :3] = torch.tensor([49406, 320, 49407])
    tmp = directory / f".{ONNX_FILE}.{os.getpid()}.tmp"
    was_device = embedder.device
    try:
        tower = TextTower(model).to("cpu").float().eval()
        with torch.no_grad(), mha_fastpath_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes about ops it rewrites
            torch.onnx.export(tower, (tokens,), str(tmp), input_names=["tokens"], output_names=["embedding"],
                              dynamic_axes={"tokens": {0: "batch"}, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        _optimize(tmp)
        os.replace(tmp, directory / ONNX_FILE)
    finally:
        tmp.unlink(missing_ok=True)
        model.to(was_device)
    note = {**_key(identity), "context_length": context_length, "tokenizer": "clip-bpe", "optimized": True}
    (directory / NOTE_FILE).write_text(json.dumps(note))
    log.info("exported the text tower to %s", directory / ONNX_FILE)
    return True


def _optimize(path: Path) -> None:
    """Rewrite the graph with onnxruntime's portable (extended) optimizations applied once, so a
    cold query skips them when it loads the file (271 ms instead of 485 ms for ViT-B-32's tower)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path) + ".opt"
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    os.replace(str(path) + ".opt", path)


class OnnxTextEncoder:
    """Embeds texts with the exported text tower; returns unit-norm float32 rows."""

    def __init__(self, path: Path, context_length: int, optimized: bool = False):
        import onnxruntime as ort

        from .tokenizer import ClipTokenizer

        options = ort.SessionOptions()
        if optimized:  # optimized at export time: loading skips the graph passes
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        options.log_severity_level = 3
        # The session loads (in C++, without the GIL) while the tokenizer builds its tables here.
        created: dict = {}

        def create() -> None:
            try:
                created["session"] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # re-raised below, in the caller's thread
                created["error"] = e

        loader = threading.Thread(target=create, name="searchlib-load-text-encoder")
        loader.start()
        try:
            self.tokenizer = ClipTokenizer(context_length)
        finally:
            loader.join()
        if "error" in created:
            raise created["error"]
        self.session = created["session"]

    @classmethod
    def for_index(cls, directory: Path, identity: ModelIdentity) -> OnnxTextEncoder | None:
        """The index's exported encoder if present and made from ``identity``'s model, else None."""
        try:
            note = json.loads((directory / NOTE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if {k: note.get(k) for k in _key(identity)} != _key(identity) or not (directory / ONNX_FILE).is_file():
            return None
        try:
            return cls(directory / ONNX_FILE, int(note["context_length"]), bool(note.get("optimized")))
        except Exception as e:  # a damaged file: fall back to the torch path
            log.warning("cannot load %s (%s); using the full model", directory / ONNX_FILE, e)
            return None

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        from .embedding import normalize

        if not texts:
            raise ValueError("no texts")
        out = self.session.run(None, {"tokens": self.tokenizer(list(texts))})[0]
        return normalize(out)
