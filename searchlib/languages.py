"""Which languages a model reads, which scripts a query is written in, and the warning when they
do not meet ("一只红色的圆" given to an English-only model returns shapes, silently).

No model imports: the facts are a table by architecture (open_clip's multilingual families, the
project's own models) read from names alone.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

#: A multilingual model suggested when a query's script is not read by the index's model.
SUGGESTED_MULTILINGUAL = "xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"
ALL = "*"


@dataclass(frozen=True)
class Languages:
    """What a model reads: ISO 639-1 codes (``*``: many), and a short description."""

    codes: tuple[str, ...]
    label: str

    @property
    def multilingual(self) -> bool:
        return ALL in self.codes


_FAMILIES = [  # (substring of the architecture, languages); first match wins
    ("xlm-roberta-large", Languages((ALL,), "100 languages (XLM-RoBERTa large text tower)")),
    ("xlm-roberta", Languages((ALL,), "100 languages (XLM-RoBERTa text tower)")),
    ("nllb-clip", Languages((ALL,), "201 languages (NLLB-200 text tower)")),
    ("siglip2", Languages((ALL,), "multilingual (SigLIP 2, Gemma tokenizer)")),
    ("i18n", Languages((ALL,), "multilingual (WebLI, 100+ languages)")),
    ("searchlib-bilingual", Languages(("en", "zh"), "English and Chinese (synthetic shapes)")),
    ("searchlib-multilingual-test", Languages((ALL,), "test model")),
]
ENGLISH = Languages(("en",), "English")


def languages_of(arch: str) -> Languages:
    """The languages an architecture's text tower was trained on (English unless known otherwise)."""
    lowered = arch.lower()
    for part, langs in _FAMILIES:
        if part in lowered:
            return langs
    return ENGLISH


#: Scripts each language is written in.
_SCRIPTS = {"en": {"Latin"}, "zh": {"Han"}, "ja": {"Han", "Kana"}, "ko": {"Hangul"}, "ru": {"Cyrillic"},
            "de": {"Latin"}, "fr": {"Latin"}, "es": {"Latin"}}
_NAMED = [("CJK", "Han"), ("HIRAGANA", "Kana"), ("KATAKANA", "Kana"), ("HANGUL", "Hangul"),
          ("CYRILLIC", "Cyrillic"), ("ARABIC", "Arabic"), ("HEBREW", "Hebrew"), ("GREEK", "Greek"),
          ("DEVANAGARI", "Devanagari"), ("BENGALI", "Bengali"), ("THAI", "Thai"), ("ARMENIAN", "Armenian"),
          ("GEORGIAN", "Georgian"), ("ETHIOPIC", "Ethiopic"), ("TAMIL", "Tamil"), ("LATIN", "Latin")]


def script_of(char: str) -> str | None:
    """The script of a letter (None for digits, punctuation, spaces, emoji)."""
    if not char.isalpha():
        return None
    if char.isascii():
        return "Latin"
    name = unicodedata.name(char, "")
    for prefix, script in _NAMED:
        if name.startswith(prefix) or f" {prefix}" in name[:20]:
            return script
    return "Other"


def scripts_in(text: str) -> dict[str, int]:
    """How many letters of each script ``text`` holds."""
    counts: dict[str, int] = {}
    for char in text:
        script = script_of(char)
        if script:
            counts[script] = counts.get(script, 0) + 1
    return counts


def unreadable_scripts(text: str, arch: str) -> list[str]:
    """Scripts of ``text`` that the model of ``arch`` was not trained on (empty: fine)."""
    langs = languages_of(arch)
    if langs.multilingual:
        return []
    readable = set().union(*(_SCRIPTS.get(code, {"Latin"}) for code in langs.codes))
    return sorted(s for s in scripts_in(text) if s not in readable)


_SCRIPT_NAMES = {"Han": "Chinese characters", "Kana": "Japanese kana", "Hangul": "Korean Hangul",
                 "Cyrillic": "Cyrillic", "Arabic": "Arabic", "Hebrew": "Hebrew", "Greek": "Greek",
                 "Devanagari": "Devanagari", "Thai": "Thai"}


def query_warning(text: str, arch: str, model_name: str) -> str | None:
    """One line saying the model cannot read the query's script, or None."""
    unread = unreadable_scripts(text, arch)
    if not unread:
        return None
    names = " and ".join(_SCRIPT_NAMES.get(s, f"{s} script") for s in unread)
    return (f"the query is written in {names}, which the index's model ({model_name}) was not "
            f"trained to read: results will not follow its meaning; for such queries index with a multilingual "
            f"model, e.g. --model {SUGGESTED_MULTILINGUAL} (see 'searchlib models')")
