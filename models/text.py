"""Text normalisation shared by every model.

``normalize`` gives the display/analysis form (NFC, no control characters,
collapsed whitespace); ``fold`` gives the matching form (lower case, accents
removed, so "Café" matches "cafe" and "ČESKÁ" matches "ceska").
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
_SPACE = re.compile(r"\s+")
#: a link (http(s):// or www.), the one pattern every model strips or marks links with
URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
# a handle does not end in '.' or '-' (that is the sentence around it); Mastodon: @user@host
_HANDLE = r"\w(?:[\w.\-]*\w)?"
_MENTION = re.compile(rf"(?<![\w@])@{_HANDLE}(?:@{_HANDLE})?")
_RT_PREFIX = re.compile(r"^RT @[\w.\-]+:\s*")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")


def normalize(text: str) -> str:
    """NFC, control and zero-width characters removed, whitespace collapsed, stripped."""
    text = _CONTROL.sub("", text)  # first, so NFC sees the characters that stay
    text = unicodedata.normalize("NFC", text)
    return _SPACE.sub(" ", text).strip()


def fold(text: str) -> str:
    """Case- and accent-insensitive form for matching."""
    if text.isascii():
        return text.lower()
    # decompose first: styled letters (𝐊, 𝑫) only become plain letters through NFKD
    decomposed = unicodedata.normalize("NFKD", text).casefold()
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return folded.translate(_QUOTES)


def strip_for_language(text: str) -> str:
    """Text with URLs, mentions, the retweet prefix and '#' removed: what a language detector
    should see."""
    text = _RT_PREFIX.sub("", text)
    text = URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = text.replace("#", " ")
    return _SPACE.sub(" ", text).strip()


def mask_handles_and_links(text: str) -> str:
    """Every @handle as ``@user`` and every link as ``http`` (the TweetEval convention)."""
    return URL.sub("http", _MENTION.sub("@user", text))


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
