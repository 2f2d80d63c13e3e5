"""Stance of a post towards a rumour's claim: support / deny / query / comment.

A cheap linear model for the streaming worker (no transformer pass of its own) over a small
block of *language-independent cue features*: Dutch and English lexicon hits (query / deny
/ support / rumour-hedging / negation / comment / insult / sarcasm / doubt cues, for post
and parent), punctuation, "is a root post", length, word overlap with the parent.  The cue
block is shared by both languages, so a model trained on English RumourEval threads (plus
80 Dutch replies, ``models/training/data/nl-stance-dev``) transfers to Dutch through it.

The code can also add hashed word uni/bigrams and word-edge character n-grams of the post
and of the parent (``FeatureConfig.dim > 0``).  The shipped model has them off
(``dim=0``): on unseen events the n-grams lowered leave-one-event-out macro-F1, because
they learn each event's topic words (see ``docs/stance-model.md``).

Scores: a multinomial logistic regression (trained in
:mod:`models.training.train_stance`), softmax probabilities, and the label is
``argmax(log p + offset)`` with per-class offsets tuned for macro-F1 (deny and query are
rare).
"""

from __future__ import annotations

import html
import itertools
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.evaluation import ClassificationReport, classification_report
from models.text import URL, fold

STANCES: tuple[str, ...] = ("support", "deny", "query", "comment")
LEXICON_VERSION = "stance-cues-3"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "stance-default"

# --------------------------------------------------------------------------- text

_MENTION = re.compile(r"(?<![\w@])@\w+(?:@[\w.\-]+)?")
_RT = re.compile(r"^\s*rt\s+@user\b:?\s*")
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+|[?!]")
_SPACE = re.compile(r"\s+")
_MAX_CHARS = 2000


def _prepare(text: str | None) -> str:
    """Folded text with URLs as ``urlx`` and mentions as ``@user`` (bounded length)."""
    if not text:
        return ""
    text = text[:_MAX_CHARS]
    if "&" in text:
        text = html.unescape(text)
    text = URL.sub(" urlx ", text)
    text = _MENTION.sub(" @user ", text)
    text = fold(text).replace("\u2019", "'").replace("`", "'")
    return _SPACE.sub(" ", text).strip()


# --------------------------------------------------------------------------- cue lexicon
# Folded (lower case, no accents) phrases; matched at word boundaries.  Dutch and English
# map onto the same cue features.

_QUERY = (
    # English
    "is this true", "is it true", "is that true", "is this real", "is that real", "is it real",
    "is this confirmed", "is that confirmed", "has this been confirmed", "confirmed?",
    "can anyone confirm", "can someone confirm", "can you confirm", "any confirmation",
    "source?", "sources?", "what source", "what's your source", "whats your source",
    "any source", "your source", "link?", "proof?", "evidence?", "any proof", "any evidence",
    "really?", "seriously?", "are you sure", "how do you know", "who says", "says who",
    "citation needed", "where did you hear", "where is this from", "where's this from",
    "is there any", "do we know", "does anyone know", "anyone know", "any news", "any update",
    "what happened", "wait what", "true?", "real?", "legit?", "for real?",
    # Dutch
    "klopt dit", "klopt dat", "klopt het", "is dit waar", "is dat waar", "is het waar",
    "echt waar?", "is dit echt", "is dat echt", "is dit bevestigd", "is dat bevestigd",
    "kan iemand bevestigen", "kan iemand dit bevestigen", "iemand een bron", "heeft iemand",
    "weet iemand", "bron?", "bronnen?", "welke bron", "wat is je bron", "wat is de bron",
    "wat is uw bron", "bewijs?", "link?", "echt?", "serieus?", "zeker weten?", "wie zegt",
    "waar staat dat", "waar heb je dat", "hoe weet je", "meer info", "wat is er gebeurd",
    "is er al", "weten jullie", "waar?", "waar komt dit vandaan",
    # colloquial Dutch (stance-cues-3; only interjections such as "huh?" are shared with
    # English, see docs/stance-model.md)
    "kan dit kloppen", "kan dat kloppen", "kan het kloppen", "waar haal je dat vandaan",
    "waar haalt u dat vandaan", "waar komt dat vandaan", "waar lees je dat", "waar zie je dat",
    "heb je een bron", "heeft u een bron", "heb je bron", "bron graag", "bron aub", "bron pls",
    "bronvermelding", "bron ervan", "bron hiervan", "linkje?", "linkje", "heb je een link",
    "heb je een linkje", "filmpje?", "beelden?", "meer info?", "iemand meer info",
    "iemand meer nieuws", "iemand info", "weet er iemand", "weet jij", "weet u",
    "wat is daar aan de hand", "wat is hier aan de hand", "wat is er aan de hand",
    "wat gebeurt er", "wat gebeurt daar", "wat gebeurt hier", "meen je dat", "meen je dit",
    "hoezo", "huh?", "is dit van vandaag", "is dit oud", "is dit recent", "van wanneer is dit",
    "is dit nieuw", "al iets bekend", "is er meer bekend", "zegt de politie er iets",
)
_DENY = (
    # English
    "fake", "fake news", "hoax", "hoaxes", "not true", "isn't true", "isnt true", "untrue",
    "false", "falsely", "debunked", "debunk", "lie", "lies", "lying", "liar", "liars",
    "bullshit", "bs", "nonsense", "rubbish", "made up", "misinformation", "disinformation",
    "misinfo", "no evidence", "not real", "never happened", "didn't happen", "not happening",
    "wrong", "incorrect", "denied", "denies", "deny", "not the case", "stop spreading",
    "don't believe", "dont believe", "photoshop", "photoshopped", "satire", "myth", "myths",
    "nope", "not confirmed", "retracted", "correction", "misleading", "propaganda",
    "not an", "not a", "wasn't", "isn't", "is not", "was not", "did not", "didn't",
    # Dutch
    "nepnieuws", "nep", "neppe", "nepbericht", "niet waar", "onwaar", "onzin", "klopt niet",
    "klopt geen", "klopt helemaal niet", "gelogen", "leugen", "leugens", "liegen", "liegt",
    "ontkend", "ontkent", "ontkennen", "ontkenning", "broodje aap", "fabeltje", "verzonnen",
    "desinformatie", "misinformatie", "gefotoshopt", "geen bewijs", "niet bevestigd",
    "trap er niet in", "stop met verspreiden", "niet delen", "niet doorsturen", "is niet",
    "was niet", "heeft niet", "zijn niet", "geen sprake", "niets van waar", "niks van waar",
    "achterhaald", "oud nieuws", "oude foto", "old photo", "old video", "oude video",
    # colloquial Dutch (stance-cues-3)
    "lulkoek", "kletskoek", "flauwekul", "larie", "gelul", "geleuter", "fakenieuws",
    "slaat nergens op", "slaat kant noch wal", "geloof er niks van", "geloof er niets van",
    "geloof ik niks van", "geloof ik niets van", "niks aan de hand", "niets aan de hand",
    "niks van aan", "niets van aan", "niks gebeurd", "niets gebeurd", "ontkracht",
    "sprookje", "sprookjes", "verzinsel", "verzinsels", "overdreven", "onjuist",
    "oude beelden", "oud filmpje", "oude filmpje", "oude filmpjes", "van vorig jaar",
    "van jaren geleden", "was vuurwerk", "gewoon vuurwerk", "alles is normaal",
    "alles normaal", "gewoon rustig", "is het rustig", "niks te zien", "niets te zien",
)
_SUPPORT = (
    # English
    "confirmed", "confirms", "confirm", "officially", "official", "it's true", "its true",
    "this is true", "that's true", "thats true", "indeed", "exactly", "breaking", "update",
    "according to", "police say", "police said", "police confirm", "reports", "reported",
    "i can confirm", "eyewitness", "i saw", "i just saw", "just heard", "happening now",
    "live", "latest", "yes", "yep", "true", "agreed", "correct", "right",
    # Dutch
    "bevestigd", "bevestigt", "bevestiging", "officieel", "het klopt", "dit klopt",
    "dat klopt", "klopt inderdaad", "inderdaad", "het is waar", "dit is waar", "dat is waar",
    "volgens de politie", "volgens", "meldt", "melden", "gemeld", "laatste nieuws", "net gezien",
    "ik was erbij", "ik zag", "ik zie", "ooggetuige", "ooggetuigen", "zojuist", "zegt de politie",
    "politie bevestigt", "ja", "klopt", "echt gebeurd", "gebeurt nu", "nu live",
    # colloquial Dutch (stance-cues-3)
    "idd", "met eigen ogen", "zelf gezien", "heb het gezien", "ik heb het gezien",
    "kan het bevestigen", "kan ik bevestigen", "kan bevestigen", "klopt helaas",
    "helaas waar", "helaas wel", "het is echt zo", "ik sta er", "ik sta hier", "sta er nu",
    "sta hier nu", "ik ben er", "ik zit er", "ik hoorde", "hoorde ook", "ik hoor het ook",
    "staat ook op", "zie het ook", "ik zie het ook",
)
_HEDGE = (
    "rumour", "rumours", "rumor", "rumors", "rumoured", "rumored", "reportedly", "allegedly",
    "unconfirmed", "unverified", "possibly", "apparently", "claims", "claim", "speculation",
    "gerucht", "geruchten", "onbevestigd", "onbevestigde", "naar verluidt", "vermoedelijk",
    "mogelijk", "zou", "zouden", "speculatie", "beweert", "beweren", "blijkbaar",
)
_NEGATION = (
    "not", "no", "never", "n't", "nobody", "nothing", "none", "neither", "nor", "cannot",
    "niet", "geen", "nooit", "niemand", "niets", "niks", "nee", "noch",
)
_COMMENT = (
    "rip", "pray", "prayers", "praying", "thoughts", "lol", "lmao", "haha", "omg", "wow",
    "sad", "terrible", "horrible", "awful", "god", "thank you", "thanks", "love", "hate",
    "disgusting", "shame", "rust zacht", "sterkte", "bidden", "verschrikkelijk", "triest",
    "wat erg", "jeetje", "bedankt", "dank", "walgelijk", "schande", "vreselijk", "mooi",
    # colloquial Dutch (stance-cues-3)
    "pas goed op", "pas op jezelf", "wees voorzichtig", "blijf veilig", "hopelijk",
    "ik hoop", "gelukkig", "pff", "hahaha", "hihi", "wauw", "gezellig", "heerlijk",
    "genieten", "prachtig", "proost",
)
# three cue classes for the hard "deny" class (added in stance-cues-2): insults, sarcasm
# and calls for caution / disbelief; most gold "deny" replies carry no explicit denial.
# Dutch phrases avoid plain words with a common neutral sense ("dom": the Utrecht Dom,
# "zielig": sympathy, "natuurlijk": of course).
_INSULT = (
    "idiot", "idiots", "moron", "morons", "stupid", "dumb", "dumbass", "fool", "fools",
    "clown", "shut up", "shut it", "fuck off", "get lost", "ignorant", "nitwit", "retard",
    "retarded", "crap", "full of crap", "pathetic",
    "idioot", "idioten", "sukkel", "sukkels", "wat dom", "hoe dom", "zo dom", "dombo",
    "debiel", "achterlijk", "kop dicht", "hou je mond", "rot op", "oprotten", "lachwekkend",
    "belachelijk",
    "kneus", "eikel", "malloot", "halve gare", "gestoord", "randdebiel",
)
_SARCASM = (
    "sure", "yeah right", "oh wait", "sure they did", "of course", "right.", "riiight",
    "as if", "give me a break", "nice try", "wonderful", "yeah sure",
    "ja hoor", "tuurlijk", "zal wel", "jaja", "ja ja", "ja natuurlijk", "vast wel",
    "mooi verhaal", "nou nou", "laat me niet lachen",
    "ja vast", "vast en zeker", "tuurlijk joh", "geloof je het zelf", "geloof je zelf",
    "ammehoela", "ja dag",
)
_DOUBT = (
    "who believes", "no one believes", "nobody believes", "do not spread", "don't spread",
    "dont spread", "jumping to conclusions", "jump to conclusions", "without knowing",
    "not the facts", "doesn't matter", "wait for the facts", "let's wait", "unless you",
    "no evidence", "not proven", "not confirmed", "conspiracy", "false flag",
    "wie gelooft", "niemand gelooft", "niet verspreiden", "verspreid geen", "voorbarig",
    "conclusies trekken", "eerst de feiten", "wacht op de feiten", "doet er niet toe",
    "complot", "complottheorie", "niet bewezen",
    "afwachten", "niet zomaar delen", "klakkeloos", "check je bronnen", "eerst checken",
    "geloof niet alles", "niet alles geloven", "paniek zaaien", "paniekzaaierij",
    "bangmakerij", "zaai geen paniek",
)
_QWORDS = frozenset((
    "what", "why", "how", "who", "where", "when", "which", "is", "are", "do", "does", "did",
    "can", "could", "was", "were", "has", "have", "will", "would", "should", "any", "anyone",
    "wat", "waarom", "hoe", "wie", "waar", "wanneer", "welke", "zijn", "heeft", "hebben",
    "kan", "kunnen", "klopt", "weet", "wordt", "gaat", "mag", "moet", "weten", "iemand",
))


def _lexicon_regex(phrases: Sequence[str]) -> re.Pattern[str]:
    parts = sorted({re.escape(p) for p in phrases}, key=len, reverse=True)
    # a phrase ending in '?' ends there; others end at a word boundary
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?:(?<=\?)|(?!\w))")


_RE_QUERY = _lexicon_regex(_QUERY)
_RE_DENY = _lexicon_regex(_DENY)
_RE_SUPPORT = _lexicon_regex(_SUPPORT)
_RE_HEDGE = _lexicon_regex(_HEDGE)
_RE_NEG = re.compile(r"(?<!\w)(?:not|no|never|nobody|nothing|none|neither|nor|cannot|niet|geen"
                     r"|nooit|niemand|niets|niks|nee|noch)(?!\w)|n't(?!\w)")
_RE_COMMENT = _lexicon_regex(_COMMENT)
_RE_INSULT = _lexicon_regex(_INSULT)
_RE_SARCASM = _lexicon_regex(_SARCASM)
_RE_DOUBT = _lexicon_regex(_DOUBT)
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")

# the dense, language-independent block (indices after the hashed block)
DENSE: tuple[str, ...] = (
    "bias", "root", "reply", "q_mark", "q_end", "q_multi", "excl", "url", "url_only", "mention",
    "short", "long", "caps", "emoji", "qword_start", "query", "query_n", "deny", "deny_n",
    "support", "support_n", "hedge", "neg", "comment", "neg_q", "root_q", "root_hedge",
    "reply_deny", "reply_support", "reply_query", "p_q", "p_query", "p_deny", "p_support",
    "p_hedge", "p_root_like", "overlap", "p_q_x_neg", "p_q_x_support", "rt",
    "insult", "sarcasm", "doubt",
)
_DI = {name: i for i, name in enumerate(DENSE)}


def _count(regex: re.Pattern[str], text: str) -> int:
    return sum(1 for _ in regex.finditer(text))


def dense_features(text: str, parent: str | None, tokens: list[str],
                   ptokens: list[str] | None) -> np.ndarray:
    """The language-independent cue block for one (prepared) post and (prepared) parent."""
    f = np.zeros(len(DENSE), dtype=np.float32)
    f[0] = 1.0
    is_root = parent is None
    f[_DI["root"]] = float(is_root)
    f[_DI["reply"]] = float(not is_root)
    words = [t for t in tokens if t not in ("?", "!")]
    content = [t for t in words if t not in ("urlx", "user")]
    nq = tokens.count("?")
    f[_DI["q_mark"]] = float(nq > 0)
    f[_DI["q_end"]] = float((bool(tokens) and tokens[-1] == "?")
                            or bool(re.search(r"\?\s*(?:urlx\s*)*$", text)))
    f[_DI["q_multi"]] = float(nq > 1)
    f[_DI["excl"]] = float("!" in tokens)
    f[_DI["url"]] = float("urlx" in text)
    f[_DI["url_only"]] = float(not content and "urlx" in text)
    f[_DI["mention"]] = float("@user" in text)
    f[_DI["short"]] = float(len(content) <= 3)
    f[_DI["long"]] = float(len(content) >= 15)
    f[_DI["emoji"]] = float(bool(_EMOJI.search(text)))
    f[_DI["caps"]] = 0.0  # filled by the caller (needs the unfolded text)
    f[_DI["qword_start"]] = float(bool(content) and content[0] in _QWORDS)
    nqu, nde, nsu = _count(_RE_QUERY, text), _count(_RE_DENY, text), _count(_RE_SUPPORT, text)
    f[_DI["query"]] = float(nqu > 0)
    f[_DI["query_n"]] = min(nqu, 3) / 3.0
    f[_DI["deny"]] = float(nde > 0)
    f[_DI["deny_n"]] = min(nde, 3) / 3.0
    f[_DI["support"]] = float(nsu > 0)
    f[_DI["support_n"]] = min(nsu, 3) / 3.0
    f[_DI["hedge"]] = float(bool(_RE_HEDGE.search(text)))
    neg = bool(_RE_NEG.search(text))
    f[_DI["neg"]] = float(neg)
    f[_DI["comment"]] = float(bool(_RE_COMMENT.search(text)))
    f[_DI["neg_q"]] = float(neg and nq > 0)
    f[_DI["root_q"]] = float(is_root and nq > 0)
    f[_DI["root_hedge"]] = float(is_root and f[_DI["hedge"]] > 0)
    f[_DI["reply_deny"]] = float(not is_root and nde > 0)
    f[_DI["reply_support"]] = float(not is_root and nsu > 0)
    f[_DI["reply_query"]] = float(not is_root and nqu > 0)
    f[_DI["rt"]] = float(text.startswith("rt @user"))
    f[_DI["insult"]] = float(bool(_RE_INSULT.search(text)))
    f[_DI["sarcasm"]] = float(bool(_RE_SARCASM.search(text)))
    f[_DI["doubt"]] = float(bool(_RE_DOUBT.search(text)))
    if parent is not None and ptokens is not None:
        pq = "?" in ptokens
        f[_DI["p_q"]] = float(pq)
        f[_DI["p_query"]] = float(bool(_RE_QUERY.search(parent)))
        f[_DI["p_deny"]] = float(bool(_RE_DENY.search(parent)))
        f[_DI["p_support"]] = float(bool(_RE_SUPPORT.search(parent)))
        f[_DI["p_hedge"]] = float(bool(_RE_HEDGE.search(parent)))
        f[_DI["p_root_like"]] = float(not parent.startswith("@user"))
        a = {t for t in content if len(t) > 3}
        b = {t for t in ptokens if len(t) > 3 and t not in ("urlx", "user")}
        f[_DI["overlap"]] = len(a & b) / len(a | b) if a and b else 0.0
        f[_DI["p_q_x_neg"]] = float(pq and neg)
        f[_DI["p_q_x_support"]] = float(pq and nsu > 0)
    return f


# --------------------------------------------------------------------------- hashing


def _h(feature: str, dim: int) -> int:
    return zlib.crc32(feature.encode("utf-8")) & (dim - 1)


def _tokens(prepared: str) -> list[str]:
    return _TOKEN.findall(prepared.replace("@user", " user "))


@lru_cache(maxsize=65536)
def _token_buckets(token: str, dim: int, char_ngrams: bool) -> tuple[int, ...]:
    """Buckets of one token's word feature and (for words of 4+ letters) its character
    4-grams with word-edge marks; cached, tokens repeat a lot."""
    out = [_h(f"w:{token}", dim)]
    if char_ngrams and len(token) >= 4 and token not in ("urlx", "user"):
        w = f"<{token}>"
        out.extend(_h(f"c:{w[i:i + 4]}", dim) for i in range(len(w) - 3))
    return tuple(out)


def sparse_features(tokens: list[str], ptokens: list[str] | None, dim: int,
                    char_ngrams: bool = True, parent_words: bool = True) -> list[int]:
    """Hashed lexical features (bucket indices; repeats removed by the caller)."""
    out: list[int] = []
    for t in tokens:
        out.extend(_token_buckets(t, dim, char_ngrams))
    out.extend(_h(f"b:{a}_{b}", dim) for a, b in itertools.pairwise(tokens))
    if tokens:
        out.append(_h(f"s:{tokens[0]}", dim))
        out.append(_h(f"e:{tokens[-1]}", dim))
    if parent_words and ptokens:
        out.extend(_h(f"p:{t}", dim) for t in set(ptokens) if t not in ("urlx", "user"))
    return out


@lru_cache(maxsize=4096)
def _prepared_parent(parent: str) -> tuple[str, list[str]]:
    """Prepared text and tokens of a parent; cached (replies share their parents).  Callers
    must not mutate the returned list."""
    p = _prepare(parent)
    return p, _tokens(p)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """``dim`` hashed buckets for the lexical n-grams; ``dim=0`` turns the hashed block off
    (a cue-only model, which is what ships: see docs/stance-model.md)."""

    dim: int = 1 << 18
    char_ngrams: bool = True
    parent_words: bool = True


def featurize(text: str | None, parent: str | None, cfg: FeatureConfig,
              is_root: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(hashed bucket indices, dense cue block) for one post.  ``is_root`` defaults to
    ``parent is None``."""
    raw = (text or "")[:_MAX_CHARS]
    t = _prepare(raw)
    p, ptoks = (None, None) if parent is None else _prepared_parent(parent[:_MAX_CHARS])
    if is_root is None:
        is_root = parent is None
    toks = _tokens(t)
    dense = dense_features(t, None if is_root else (p or ""), toks,
                           None if is_root else (ptoks or []))
    letters = [c for c in raw if c.isalpha()]
    if len(letters) >= 6:
        dense[_DI["caps"]] = float(sum(c.isupper() for c in letters) / len(letters) > 0.6)
    if cfg.dim <= 0:
        return np.empty(0, dtype=np.int64), dense
    idx = np.unique(np.asarray(sparse_features(toks, ptoks, cfg.dim, cfg.char_ngrams,
                                               cfg.parent_words), dtype=np.int64))
    return idx, dense


# --------------------------------------------------------------------------- API


@dataclass(frozen=True, slots=True)
class StanceResult:
    label: str  # one of STANCES
    probs: dict[str, float]


class StanceClassifier(Protocol):
    def classify(self, texts: Sequence[str],
                 parents: Sequence[str | None] | None = None) -> list[StanceResult]: ...


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


#: (text, parent) pairs whose stance a LinearStanceClassifier remembers (emptied when full)
STANCE_CACHE_SIZE = 20_000


def _pair_key(text: object, parent: object) -> tuple[str, str | None]:
    """The pair itself (not its hash: no two pairs can share an entry, whatever the
    ``PYTHONHASHSEED``); 20,000 pairs of tweet-sized texts hold about 10 MB."""
    return (text if isinstance(text, str) else "",
            parent if isinstance(parent, str) else None)


class LinearStanceClassifier:
    """Shared cue block (+ optional hashed n-grams) → multinomial logistic regression.

    ``w_sparse``: (dim, 4) weights of the hashed buckets (``dim`` may be 0: no lexical
    block); ``w_dense``: (len(DENSE), 4);
    ``offsets``: per-class additions to the log-probabilities in the decision rule.
    Hashed weights are scaled by ``1/sqrt(active buckets)`` of the post.
    """

    def __init__(self, w_sparse: np.ndarray, w_dense: np.ndarray, offsets: np.ndarray,
                 cfg: FeatureConfig, meta: Mapping[str, Any] | None = None) -> None:
        if w_sparse.shape != (cfg.dim, len(STANCES)):
            raise ValueError(f"w_sparse has shape {w_sparse.shape}, expected "
                             f"({cfg.dim}, {len(STANCES)})")
        if w_dense.shape != (len(DENSE), len(STANCES)):
            raise ValueError(f"w_dense has shape {w_dense.shape}")
        self.w_sparse = np.ascontiguousarray(w_sparse, dtype=np.float32)
        self.w_dense = np.ascontiguousarray(w_dense, dtype=np.float32)
        self.offsets = np.asarray(offsets, dtype=np.float32).reshape(len(STANCES))
        self.cfg = cfg
        self.meta = dict(meta or {})
        self._results: dict[tuple[str, str | None], StanceResult] = {}

    # -- scoring
    def logits(self, texts: Sequence[str],
               parents: Sequence[str | None] | None = None) -> np.ndarray:
        n = len(texts)
        if parents is not None and len(parents) != n:
            raise ValueError("texts and parents differ in length")
        out = np.empty((n, len(STANCES)), dtype=np.float32)
        if n == 0:
            return out
        dense = np.empty((n, len(DENSE)), dtype=np.float32)
        all_idx: list[np.ndarray] = []
        counts = np.empty(n, dtype=np.int64)
        for i in range(n):
            text = texts[i] if isinstance(texts[i], str) else ""
            parent = None if parents is None else parents[i]
            if parent is not None and not isinstance(parent, str):
                parent = None
            idx, d = featurize(text, parent, self.cfg)
            dense[i] = d
            all_idx.append(idx)
            counts[i] = len(idx)
        out[:] = dense @ self.w_dense
        flat = np.concatenate(all_idx) if all_idx else np.empty(0, dtype=np.int64)
        if flat.size:
            rows = self.w_sparse[flat]
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            nonempty = counts > 0
            sums = np.add.reduceat(rows, starts[nonempty], axis=0)
            scale = 1.0 / np.sqrt(counts[nonempty].astype(np.float32))
            out[nonempty] += sums * scale[:, None]
        return out

    def predict_proba(self, texts: Sequence[str],
                      parents: Sequence[str | None] | None = None) -> np.ndarray:
        return _softmax(self.logits(texts, parents))

    def classify(self, texts: Sequence[str],
                 parents: Sequence[str | None] | None = None) -> list[StanceResult]:
        """Stance of each text (as a reply to ``parents[i]``); a (text, parent) pair seen
        before is answered from a bounded cache (replies and quotes repeat a lot)."""
        if parents is not None and len(parents) != len(texts):
            raise ValueError("texts and parents differ in length")
        keys = [_pair_key(t, None if parents is None else parents[i])
                for i, t in enumerate(texts)]
        cache = self._results
        # a copy of a cached result's probs: a caller that changes them cannot change the
        # answer for the next post with the same pair
        results: list[StanceResult | None] = [
            None if (r := cache.get(k)) is None else StanceResult(r.label, dict(r.probs))
            for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            probs = self.predict_proba([texts[i] for i in todo],
                                       None if parents is None else [parents[i] for i in todo])
            decision = np.log(np.maximum(probs, 1e-12)) + self.offsets
            if len(cache) + len(todo) > STANCE_CACHE_SIZE:
                cache.clear()
            for i, k, p in zip(todo, decision.argmax(axis=1), probs, strict=True):
                results[i] = result = StanceResult(
                    STANCES[int(k)], {s: float(p[j]) for j, s in enumerate(STANCES)})
                if len(cache) < STANCE_CACHE_SIZE:
                    cache[keys[i]] = StanceResult(result.label, dict(result.probs))
        return [r for r in results if r is not None]

    # -- persistence
    def save(self, path: str | Path) -> None:
        """Write ``config.json`` and ``weights.npz`` (non-zero hashed rows only, fp16)."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        nz = np.flatnonzero(np.any(self.w_sparse != 0, axis=1)).astype(np.int32)
        np.savez_compressed(d / "weights.npz", rows=nz,
                            values=self.w_sparse[nz].astype(np.float16),
                            dense=self.w_dense.astype(np.float32))
        config = {
            "format": FORMAT_VERSION, "kind": "linear-stance", "labels": list(STANCES),
            "hash_dim": self.cfg.dim, "char_ngrams": self.cfg.char_ngrams,
            "parent_words": self.cfg.parent_words, "dense_features": list(DENSE),
            "lexicon_version": LEXICON_VERSION, "hash": "crc32-utf8",
            "offsets": [round(float(x), 6) for x in self.offsets], "meta": self.meta,
        }
        (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LinearStanceClassifier:
        d = Path(path)
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
        if config.get("format") != FORMAT_VERSION or config.get("kind") != "linear-stance":
            raise ValueError(f"{d}: not a linear-stance model of format {FORMAT_VERSION}")
        if tuple(config["labels"]) != STANCES or tuple(config["dense_features"]) != DENSE:
            raise ValueError(f"{d}: labels or cue features differ from this code's")
        if config.get("lexicon_version") != LEXICON_VERSION:
            raise ValueError(f"{d}: cue lexicon {config.get('lexicon_version')!r}, this code "
                             f"has {LEXICON_VERSION!r}")
        cfg = FeatureConfig(int(config["hash_dim"]), bool(config["char_ngrams"]),
                            bool(config["parent_words"]))
        with np.load(d / "weights.npz") as z:
            w = np.zeros((cfg.dim, len(STANCES)), dtype=np.float32)
            w[z["rows"]] = z["values"].astype(np.float32)
            dense = z["dense"].astype(np.float32)
        return cls(w, dense, np.asarray(config["offsets"], dtype=np.float32), cfg,
                   config.get("meta"))


@lru_cache(maxsize=1)
def load_default_stance() -> LinearStanceClassifier:
    """The shipped model (``models/weights/stance-default``), loaded once."""
    return LinearStanceClassifier.load(WEIGHTS_DIR)


def parent_texts(posts: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """For each post, the text of the post it replies to (or quotes) within ``posts``;
    ``None`` for roots.  A reply whose parent is not among ``posts`` gets ``""`` (a reply
    with an unknown parent)."""
    by_id = {str(p.get("id")): p for p in posts}
    out: list[str | None] = []
    for p in posts:
        ref = p.get("reply_to") or p.get("quote_of")
        if not ref:
            out.append(None)
            continue
        parent = by_id.get(str(ref))
        text = parent.get("text") if parent is not None else ""
        out.append(text if isinstance(text, str) else "")
    return out


def evaluate_stance(posts: Sequence[Mapping[str, Any]], gold: Mapping[str, str],
                    classifier: StanceClassifier) -> ClassificationReport:
    """Classify the posts (parent text resolved from ``reply_to``/``quote_of`` within
    ``posts``) and compare with ``gold`` (post id → stance); posts without a gold label are
    skipped."""
    parents = parent_texts(posts)
    keep = [i for i, p in enumerate(posts) if str(p.get("id")) in gold]
    texts = [str(posts[i].get("text") or "") for i in keep]
    results = classifier.classify(texts, [parents[i] for i in keep])
    return classification_report([gold[str(posts[i].get("id"))] for i in keep],
                                 [r.label for r in results], STANCES)
