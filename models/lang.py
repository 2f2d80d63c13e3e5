"""Language detection: CLD2 (pycld2) first, lingua where CLD2 is unsure.

CLD2 is fast (~6 µs a post) and accurate on longer text; lingua (high-accuracy
mode, restricted to the configured languages) is better on short posts but
~100x slower. Posts that CLD2 judges reliably, in a configured language, with
enough text go with CLD2; the rest (typically ~15-20 % of tweets) go to lingua.
Measured on UMSAB tweets (8 languages, 2,592 posts): lingua low-accuracy 94.1 %
at 93 µs/post, CLD2 alone 92.6 % at 6 µs, this hybrid 94.4 % at ~16 µs.
Posts too short to judge keep the language their platform reported, else ``und``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import pycld2
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from models.text import strip_for_language

UNDETERMINED = "und"
DEFAULT_LANGUAGES = ("nl", "en", "de", "fr", "es", "it", "pt", "pl", "tr", "ar")
MIN_LETTERS = 8
CLD2_MIN_CHARS = 40
CLD2_MIN_PERCENT = 70
PARALLEL_FROM = 32


class LanguageDetectorProtocol(Protocol):
    def detect_batch(self, texts: Sequence[str], hints: Sequence[str | None]) -> list[str]:
        """ISO 639-1 code (or ``und``) per text; ``hints`` are the platform-reported codes."""
        ...


def _language(code: str) -> Language:
    try:
        iso = getattr(IsoCode639_1, code.upper())
    except AttributeError:
        raise ValueError(f"language {code!r} is not supported by the detector") from None
    return Language.from_iso_code_639_1(iso)


def _enough_letters(text: str) -> bool:
    return len(text) >= 4 * MIN_LETTERS or sum(ch.isalpha() for ch in text) >= MIN_LETTERS


class HybridDetector:
    """Batch language detection; thread-safe (lingua releases the GIL in batches)."""

    def __init__(self, languages: Iterable[str] = DEFAULT_LANGUAGES) -> None:
        codes = sorted({c.lower() for c in languages} | {"nl", "en"})
        self.languages = tuple(codes)
        self._allowed = frozenset(codes)
        # models are loaded up front (~0.9 s, ~300 MB once per process; lingua caches them)
        # so the first posts of a stream do not wait for lazy loading
        self._lingua: LanguageDetector = LanguageDetectorBuilder.from_languages(
            *[_language(c) for c in codes]).with_preloaded_language_models().build()

    def _cld2(self, text: str) -> str | None:
        if len(text) < CLD2_MIN_CHARS:
            return None
        try:
            reliable, _, details = pycld2.detect(text, bestEffort=True)[:3]
        except pycld2.error:
            return None
        code, percent = details[0][1], details[0][2]
        if reliable and percent >= CLD2_MIN_PERCENT and code in self._allowed:
            return str(code)
        return None

    def detect_batch(self, texts: Sequence[str], hints: Sequence[str | None]) -> list[str]:
        out: list[str] = [UNDETERMINED] * len(texts)
        todo_idx: list[int] = []
        todo_txt: list[str] = []
        for i, raw in enumerate(texts):
            text = strip_for_language(raw)
            if not _enough_letters(text):
                continue
            code = self._cld2(text)
            if code is not None:
                out[i] = code
            else:
                todo_idx.append(i)
                todo_txt.append(text)
        if todo_txt:
            detected = (
                self._lingua.detect_languages_in_parallel_of(todo_txt)
                if len(todo_txt) >= PARALLEL_FROM
                else [self._lingua.detect_language_of(t) for t in todo_txt]
            )
            for i, lang in zip(todo_idx, detected, strict=True):
                if lang is not None:
                    out[i] = lang.iso_code_639_1.name.lower()
        for i, hint in enumerate(hints):
            if out[i] == UNDETERMINED and hint:
                out[i] = normalise_hint(hint)
        return out


def normalise_hint(hint: str) -> str:
    """A platform's language tag ('nl', 'nl-NL', 'en_US') as an ISO 639-1 code, else ``und``."""
    code = hint.strip().lower().replace("_", "-").split("-")[0]
    return code if len(code) == 2 and code.isalpha() else UNDETERMINED
