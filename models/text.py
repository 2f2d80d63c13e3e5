"""Text normalisation shared by every model.

``normalize`` gives the display/analysis form (NFC, no control characters,
collapsed whitespace); ``fold`` gives the matching form (lower case, accents
removed, so "Café" matches "cafe" and "ČESKÁ" matches "ceska").
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACE = re.compile(r"\s+")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@[\w.\-]+(?:@[\w.\-]+)?")
_RT_PREFIX = re.compile(r"^RT @[\w.\-]+:\s*")
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")


def normalize(text: str) -> str:
    """NFC, control and zero-width characters removed, whitespace collapsed, stripped."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    return _SPACE.sub(" ", text).strip()


def fold(text: str) -> str:
    """Case- and accent-insensitive form for matching."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def strip_for_language(text: str) -> str:
    """Text with URLs, mentions, the retweet prefix and '#' removed: what a language detector
    should see."""
    text = _RT_PREFIX.sub("", text)
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = text.replace("#", " ")
    return _SPACE.sub(" ", text).strip()


def hashtags(text: str) -> list[str]:
    """Folded hashtags in order of appearance, without '#', deduplicated."""
    seen: dict[str, None] = {}
    for m in _HASHTAG.finditer(text):
        seen.setdefault(fold(m.group(1)), None)
    return list(seen)


def mentions(text: str) -> list[str]:
    """Mentioned handles, lower case, without the leading '@', deduplicated."""
    seen: dict[str, None] = {}
    for m in _MENTION.finditer(text):
        seen.setdefault(m.group(0)[1:].lower(), None)
    return list(seen)
