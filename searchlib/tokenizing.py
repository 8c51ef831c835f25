"""Tokenizers for the torch-free query path, saved into the index beside the exported text tower.

Three kinds cover open_clip's models:

* ``clip-bpe`` — CLIP's byte-pair encoding (OpenAI and LAION CLIP models, the bundled model):
  :class:`searchlib.tokenizer.ClipTokenizer`, from the merges file open_clip ships.
* ``hf`` — a Hugging Face fast tokenizer (XLM-RoBERTa, NLLB, mT5/SigLIP i18n, ...): its
  ``tokenizer.json`` runs in the ``tokenizers`` package, with open_clip's cleaning, truncation and
  padding reproduced from ``tokenizer_settings.json``.
* ``sentencepiece`` — a SentencePiece model used directly (T5-style: pieces, then ``</s>``), for
  tokenizers that have no fast form.

Neither kind imports torch or transformers at query time.
"""

from __future__ import annotations

import html
import json
import logging
import string
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SETTINGS_FILE = "tokenizer_settings.json"
#: Files each kind needs beside the ONNX text tower.
TOKENIZER_FILES = {"clip-bpe": (), "hf": ("tokenizer.json", SETTINGS_FILE),
                   "sentencepiece": ("tokenizer.model", SETTINGS_FILE)}
#: Longest stretch of text worth tokenizing: context lengths are at most a few hundred tokens, and
#: tokenizers can be quadratic in a word's length (a 10,000-letter word took 6.7 s).
MAX_TEXT_CHARS = 4096


def _text_cfg(arch: str) -> dict:
    from .models import architecture_config

    return architecture_config(arch).get("text_cfg", {})


def context_length_of(arch: str) -> int:
    return int(_text_cfg(arch).get("context_length", 77))


def tokenizer_kind(arch: str) -> str | None:
    """Which torch-free tokenizer serves ``arch`` (None: queries need the full model)."""
    text = _text_cfg(arch)
    kwargs = text.get("tokenizer_kwargs", {})
    if text.get("tokenizer_mode"):
        return None  # custom token layouts ('clips') are not reproduced
    if text.get("hf_tokenizer_name") or "siglip" in arch.lower():
        return "hf"
    if "vocab_size" in text and not kwargs.get("reduction_mask") and not text.get("hf_model_name"):
        return "clip-bpe"
    return None


def clean_text(text: str, kind: str) -> str:
    """open_clip's text cleaning: ``lower``, ``whitespace`` or ``canonicalize``."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text[:MAX_TEXT_CHARS]))).strip()
    if kind == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    elif kind == "lower":
        text = text.lower()
    return " ".join(text.split()).strip()


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def save_tokenizer(tokenizer, kind: str, folder: Path) -> str:
    """Write the files the query path needs from open_clip's tokenizer object into ``folder``.

    Returns the kind written: ``hf`` becomes ``sentencepiece`` for a tokenizer that has no fast
    (``tokenizer.json``) form but a SentencePiece model.
    """
    if kind == "clip-bpe":
        return kind
    inner = tokenizer.tokenizer  # the transformers tokenizer inside HFTokenizer / SigLipTokenizer
    if getattr(inner, "backend_tokenizer", None) is None and str(getattr(inner, "vocab_file", "")).endswith(".model"):
        kind = "sentencepiece"
    clean = _clean_kind(tokenizer)
    settings = {"clean": clean, "context_length": int(tokenizer.context_length),
                "pad_id": int(inner.pad_token_id if inner.pad_token_id is not None else 0),
                "strip_sep_id": int(inner.sep_token_id) if getattr(tokenizer, "strip_sep_token", False) else None}
    if kind == "hf":
        backend = getattr(inner, "backend_tokenizer", None)
        if backend is None:
            raise ValueError("the tokenizer has no fast (tokenizer.json) form")
        backend.save(str(folder / "tokenizer.json"))
    else:
        import shutil

        shutil.copyfile(inner.vocab_file, folder / "tokenizer.model")
        settings["eos_id"] = int(inner.eos_token_id)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    return kind


def _clean_kind(tokenizer) -> str:
    fn = getattr(tokenizer, "clean_fn", None)
    name = getattr(fn, "__name__", "")
    if "canonicalize" in name or fn is None:  # SigLipTokenizer always canonicalizes
        return "canonicalize"
    return "lower" if "lower" in name else "whitespace"


def load_tokenizer(kind: str, folder: Path, context_length: int):
    """A callable ``texts -> (n, context_length) int64 array`` for ``kind``."""
    if kind == "clip-bpe":
        from .tokenizer import ClipTokenizer

        return ClipTokenizer(context_length)
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    if kind == "hf":
        return HubTokenizer(folder / "tokenizer.json", settings)
    if kind == "sentencepiece":
        return PieceTokenizer(folder / "tokenizer.model", settings)
    raise ValueError(f"unknown tokenizer kind {kind!r}")


class HubTokenizer:
    """A Hugging Face ``tokenizer.json`` with open_clip's cleaning, truncation and padding."""

    def __init__(self, path: Path, settings: dict):
        from tokenizers import Tokenizer

        self.settings = settings
        self.context_length = int(settings["context_length"])
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.context_length)

    def __call__(self, texts: list[str]) -> np.ndarray:
        cleaned = [clean_text(t, self.settings["clean"]) for t in texts]
        out = np.full((len(texts), self.context_length), self.settings["pad_id"], dtype=np.int64)
        for row, encoding in enumerate(self.tokenizer.encode_batch(cleaned)):
            ids = encoding.ids[:self.context_length]
            out[row, :len(ids)] = ids
        strip = self.settings.get("strip_sep_id")
        if strip is not None:
            out[out == strip] = 0
        return out


class PieceTokenizer:
    """A SentencePiece model used as T5 does: the pieces, then ``</s>``, truncated, then padding."""

    def __init__(self, path: Path, settings: dict):
        import sentencepiece

        self.settings = settings
        self.context_length = int(settings["context_length"])
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(path))

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), self.context_length), self.settings["pad_id"], dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.processor.encode(clean_text(text, self.settings["clean"]))[:self.context_length - 1]
            ids = ids + [self.settings["eos_id"]]
            out[row, :len(ids)] = ids
        return out
