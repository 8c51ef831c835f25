"""CLIP's byte-pair-encoding tokenizer without torch.

A query in a new process should not pay ~2.5 s for ``import torch``. This reproduces the tokens of
open_clip's ``SimpleTokenizer`` (lower-case cleaning, no reduction) from the same merges file,
returning numpy arrays; a test checks it against open_clip on many texts.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

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
        lines = gzip.open(vocab_path or _vocab_path()).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]
        symbols = list(_byte_alphabet().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
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
        from .tokenizing import clean_text

        return clean_text(text, self.clean_kind)

    def _bpe(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                rank = self.ranks.get(pair)
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
