"""Tokenizers for the torch-free query path, saved into the index beside the exported text tower.

Three kinds cover open_clip's models:

* ``clip-bpe`` — CLIP's byte-pair encoding (OpenAI and LAION CLIP models, the bundled model):
  :class:`ClipTokenizer`, which reproduces the tokens of open_clip's ``SimpleTokenizer``
  (lower-case cleaning, no reduction) from the merges file open_clip ships; a test checks it
  against open_clip on many texts.
* ``hf`` — a Hugging Face fast tokenizer (XLM-RoBERTa, NLLB, mT5/SigLIP i18n, ...): its
  ``tokenizer.json`` runs in the ``tokenizers`` package, with open_clip's cleaning, truncation and
  padding reproduced from ``tokenizer_settings.json``.
* ``sentencepiece`` — a SentencePiece model used directly (T5-style: pieces, then ``</s>``), for
  tokenizers that have no fast form.

No kind imports torch or transformers at query time: a query in a new process should not pay
seconds for ``import torch``.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import itertools
import json
import logging
import string
from functools import lru_cache
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
    text = html.unescape(html.unescape(_fix_text(text[:MAX_TEXT_CHARS]))).strip()
    if kind == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    elif kind == "lower":
        text = text.lower()
    return " ".join(text.split()).strip()


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _fix_text(text: str) -> str:
    """``ftfy.fix_text``, which leaves printable ASCII without ``&`` as it is: every ftfy fix
    concerns non-ASCII characters, control characters or HTML entities (a test checks the
    shortcut against ftfy). Importing ftfy (and its wcwidth tables) takes ~0.1 s of a cold query."""
    if text.isascii() and text.isprintable() and "&" not in text:
        return text
    import ftfy

    return ftfy.fix_text(text)


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


# -- CLIP byte-pair encoding ---------------------------------------------------------------
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2


def _vocab_path() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it (or torch)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """Printable stand-ins for the 256 byte values (the BPE works on these characters)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


#: Letters of one word given to the BPE: its cost grows with the square of a word's length, and a
#: word this long already yields more tokens than any context holds.
MAX_WORD = 300


class ClipTokenizer:
    """Tokenizes texts into ``(n, context_length)`` int64 arrays: start, BPE ids, end, zeros.

    Args:
        context_length: tokens per text (open_clip truncates longer texts and ends them with EOT).
        clean: open_clip's cleaning (``lower`` for CLIP models).
    """

    def __init__(self, context_length: int = 77, vocab_path: Path | None = None, clean: str = "lower"):
        import regex

        self.context_length = context_length
        self.clean_kind = clean
        # Only the first N_MERGES lines after the header are used, about a fifth of the file:
        # reading just those, and keeping each merge as its line ("a b": no symbol holds a space),
        # cuts a cold query's tokenizer set-up from ~0.1 s to ~0.03 s.
        with gzip.open(vocab_path or _vocab_path(), "rt", encoding="utf-8", newline="\n") as lines:
            merges = [line.rstrip("\n") for line in itertools.islice(lines, 1, N_MERGES + 1)]
        symbols = list(_byte_alphabet().values())
        vocab = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self._cache: dict[str, list[int]] = {}
        self._pattern = regex.compile(
            r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def clean(self, text: str) -> str:
        return clean_text(text, self.clean_kind)

    def _bpe(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                rank = self.ranks.get(pair[0] + " " + pair[1])
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = pair, rank
            if best is None:
                break
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        alphabet = _byte_alphabet()
        ids: list[int] = []
        for piece in self._pattern.findall(self.clean(text)):
            if len(ids) >= self.context_length:  # the rest would be truncated anyway
                break
            if piece in ("<start_of_text>", "<end_of_text>"):
                ids.append(self.encoder[piece])
                continue
            ids.extend(self._bpe("".join(alphabet[b] for b in piece[:MAX_WORD].encode("utf-8"))))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [self.sot] + self.encode(text) + [self.eot]
            if len(tokens) > self.context_length:
                tokens = tokens[:self.context_length]
                tokens[-1] = self.eot
            out[row, :len(tokens)] = tokens
        return out
