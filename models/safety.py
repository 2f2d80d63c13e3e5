"""Crowd-safety posts: a Dutch + English lexicon classifier (with a few German/French terms).

A post is a *crowd-safety post* when it reports, first-hand or second-hand, something a
command post must look at now: a crowd crush (``gedrang``, ``word geplet``, ``kan niet meer
vooruit``, ``crush``, ``stampede``), violence (``steekpartij``, ``vechtpartij``, ``mes``
with context, ``stabbing``, ``shots fired``), fire or smoke (``brand``, ``rookontwikkeling``,
``fire``, ``smoke``) or a medical emergency (``onwel``, ``flauwgevallen``, ``EHBO``,
``injured``, ``fainted``). Categories: ``crowd_crush``, ``violence``, ``fire_smoke``,
``medical``.

Guards keep figurative and negated uses out:

* figurative phrases are blanked before matching ("brand new", "this set is fire",
  "killing it", "crushed it", "my crush", "dood gaan van het lachen", "photo shoot",
  "pillow fight", "on fire" said of a DJ or a team, "ik rook een sigaret", ...);
* a term preceded within three words by a negation (``geen``, ``niet``, ``niemand``,
  ``no``, ``not``, ``nobody``, ``without``) does not count ("geen gewonden",
  "no one was injured", "don't panic");
* denials of a report ("nepnieuws", "fake", "klopt niet", "not true", "niks aan de hand")
  make the whole post a non-safety post.

Pure and cheap: one regex pass for the guards, one for the terms (a few µs a post), on the
folded text (:func:`models.text.fold`) the enricher already computes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from models.text import fold

__all__ = ["CATEGORIES", "SafetyResult", "classify", "classify_folded"]

#: In priority order: a tie between categories goes to the earlier one.
CATEGORIES: tuple[str, ...] = ("crowd_crush", "violence", "fire_smoke", "medical")

_W = r"(?<!\w)"  # start of a word (after '#' too: hashtags count)
_E = r"(?!\w)"  # end of a word

_TERMS: dict[str, tuple[str, ...]] = {
    "crowd_crush": (
        # nl
        r"gedrang", r"verdrukking", r"(?:worden|wordt|word|werden|raken) (?:hier )?verdrukt",
        r"verdrukt", r"(?:word|worden|wordt|werd|werden) (?:hier )?(?:ge|plat)plet",
        r"geplet", r"platgedrukt", r"platgedrukt worden", r"fijngedrukt",
        r"(?:kan|kunnen|kon|konden|kun) (?:hier )?(?:niet|nergens) (?:meer )?(?:vooruit|achteruit)",
        r"vooruit (?:of|noch) achteruit", r"(?:voor|achter)uit of (?:voor|achter)uit",
        r"(?:kan|kunnen|kon) (?:hier |er )?(?:niet|nergens) (?:meer )?(?:uit|weg|eruit)",
        r"(?:kunnen|kan|kon) er niet (?:meer )?uit",
        r"levensgevaarlijk (?:druk|vol)", r"gevaarlijk (?:druk|vol)",
        r"mensenmassa (?:drukt|duwt|schuift)", r"tegen de hekken (?:gedrukt|geduwd|aan gedrukt)",
        r"(?:klimmen|klauteren) over (?:de )?hekken", r"hekken (?:zijn |gaan )?(?:om|omver)",
        r"krijg (?:bijna )?geen (?:adem|lucht)", r"kan (?:bijna )?geen adem",
        r"paniek", r"in paniek", r"muurvast", r"(?:het )?is (?:hier )?(?:echt |levens)?gevaarlijk",
        # en
        r"crowd crush", r"crush", r"crushed", r"crushing", r"stampede", r"crowd surge",
        r"(?:squeezed|crushed|pushed|pinned) against", r"can'?t breathe", r"cannot breathe",
        r"can'?t (?:get out|move (?:forward|back))", r"(?:cannot|can not) get out",
        r"dangerously (?:packed|crowded|full)", r"(?:it'?s|it is) (?:getting )?dangerous",
        r"panic", r"panicking", r"trampled",
        # de / fr (tourists at Dutch events)
        r"gedrange", r"massenpanik", r"panik", r"kommen nicht raus", r"bousculade",
        r"mouvement de foule",
    ),
    "violence": (
        r"vechtpartij(?:en)?", r"knokpartij(?:en)?", r"massale vechtpartij", r"gevecht",
        r"steekpartij(?:en)?", r"neergestoken", r"steekwond(?:en)?", r"gestoken met",
        r"met een mes", r"mes getrokken", r"trok een mes", r"mes (?:op zak|tevoorschijn)",
        r"messen", r"schietpartij", r"schietincident", r"schoten (?:gelost|gehoord)",
        r"neergeschoten", r"beschoten", r"mishandeld", r"mishandeling",
        r"in elkaar (?:geslagen|getrapt|geschopt)", r"klappen (?:gevallen|uitgedeeld)",
        r"bommelding", r"(?:er is )?een bom",
        r"fight(?:s|ing)?", r"brawl", r"stabb(?:ing|ed)", r"stab wounds?", r"knife",
        r"knifeman", r"shooting", r"shots fired", r"gun ?shots?", r"gunfire", r"shooter",
        r"(?:got|getting|being) (?:beaten|attacked|assaulted)", r"assault(?:ed)?",
        r"bomb (?:threat|scare)", r"messerstecherei", r"schlagerei", r"bagarre",
    ),
    "fire_smoke": (
        r"brand", r"brandje", r"in brand", r"uitslaande brand", r"vlammen",
        r"vlammenzee", r"rookontwikkeling", r"rookwolk(?:en)?", r"rook", r"dikke rook",
        r"brandweer", r"brandlucht", r"brandt", r"staat in de fik", r"in de fik", r"fik",
        r"fire", r"on fire", r"fires", r"flames", r"smoke", r"smoking", r"burning",
        r"blaze", r"fire brigade", r"fire truck", r"firefighters",
        r"feuer", r"rauch", r"incendie", r"fumee",
    ),
    "medical": (
        r"onwel", r"onwel geworden", r"flauwgevallen", r"flauw gevallen", r"flauwvallen",
        r"flauwvalt", r"bewusteloos", r"buiten bewustzijn", r"ehbo", r"ambulances?",
        r"gewond(?:e|en)?", r"zwaargewond", r"lichtgewond", r"reanim(?:atie|eren|eert|eerd)",
        r"gereanimeerd", r"hartstilstand", r"hartaanval", r"ademt niet", r"bloedt", r"bloedend",
        r"onder het bloed", r"doden", r"dodelijk slachtoffer", r"slachtoffers?",
        r"in elkaar gezakt", r"(?:is|zijn) neergevallen", r"valt flauw",
        r"ingestort", r"collapsed", r"collapsing", r"fainted", r"fainting", r"passed out",
        r"unconscious", r"injured", r"injuries", r"injury", r"hurt", r"medics?",
        r"paramedics?", r"first aid", r"not breathing", r"cpr", r"bleeding",
        r"heart attack", r"casualt(?:y|ies)", r"umgekippt", r"kippen um", r"verletzt",
        r"malaises?", r"evanoui", r"blesses",
    ),
}

# Figurative or harmless uses, blanked out before the terms are matched.
_GUARDS: tuple[str, ...] = (
    # fire
    r"brand ?new", r"brandnew",
    r"(?:the|a|this|that|our|your|their|new|big|fashion|clothing|beer|favou?rite|own|merch)"
    r" brand",
    r"brand (?:ambassador|activation|store|deal|awareness|name|partner)s?",
    r"(?:is|was|are|were|'s|'re|so|absolutely|straight|pure|literally|looks?|sounds?"
    r"|looked|sounded) (?:so |absolutely |literally |straight |just |pure )?(?:fire|flames)"
    r"(?! (?:in|at|near|bij|by|on|inside|behind|next to|broke|brigade|truck|alarm|exit))",
    r"(?:dj|djs|set|band|crowd|team|he|she|they|you|we|i|i'm|we're|you're|he's|she's|ajax"
    r"|psv|feyenoord|oranje|striker|keeper|singer|rapper|artist|line-?up|vibe|vibes|party"
    r"|feest|sfeer)(?: [\w'#-]+){0,4}?(?: is| are| was| were|'s|'re|'m)? (?:totally |so |"
    r"absolutely |just |really |echt )?on fire",
    r"fired up", r"fire (?:up|away)", r"set (?:the|this) (?:place|stage|dancefloor|dance floor)"
    r" on fire",
    r"(?:fire|vuur)(?:werk|works)", r"ceasefire",
    r"smoke (?:a|some|weed|joints?|cigarettes?|machine|screen)", r"smoking (?:area|zone|ban)",
    r"no smoking", r"holy smokes?", r"(?:ik|jij|wij|we) (?:rook|roken)",
    r"rook(?:t|en)? (?:een|wiet|jointjes?|sigaret(?:ten)?|sigaar)", r"rook(?:worst|machine)",
    r"smoking hot", r"burning (?:sun|hot|question|desire)",
    r"(?:brandende|brandend) (?:zon|heet|vraag)",
    r"(?:the )?sun is burning", r"brandt (?:de|mijn) (?:zon|huid)", r"zon brandt",
    # violence
    r"killing it", r"killed it", r"kill(?:s|ing|ed)? me", r"pillow fight", r"water fight",
    r"food fight", r"snowball fight", r"fight (?:club|song|for|over)",
    r"fighting (?:for|over)", r"fight(?:ing)? the (?:heat|queue|cold|hangover)",
    r"shooting (?:a |the |some )?(?:video|videos|photos?|pics?|footage|film|vlog|stars?)",
    r"photo ?shoot", r"shooting star", r"knife (?:and fork|and spoon)",
    r"(?:mes|messen) en (?:vork|vorken)", r"(?:a|de|het) bom (?:geld|duiten)",
    r"bom (?:geld|duiten|sfeer)", r"(?:een|de) bom(?:men)? (?:van een|aan)",
    r"gevecht (?:om|voor) (?:een|de|het)", r"brawl(?:er)? (?:stars?)",
    # crowd crush
    r"(?:my|a|een|mijn|his|her|celebrity|school|new|secret|huge|little|tiny) crush", r"crush on",
    r"crush(?:ed|ing) it", r"crushing (?:the|this|that) (?:set|game|gig|show)",
    r"crushed (?:ice|garlic|velvet)", r"candy crush",
    r"panic (?:buying|attack)", r"panic!? at the disco", r"geen paniek", r"niet in paniek",
    r"no (?:need to )?panic", r"don'?t panic", r"paniekvoetbal",
    r"can'?t breathe (?:from|of) (?:laughing|laughter)", r"(?:kan|kon) niet meer van het lachen",
    r"(?:tram|metro|trein|bus|verkeer|weg|ring|a10|snelweg|auto's?)(?: \w+)?"
    r" (?:zit|staat|staan|zitten) (?:hier |weer |helemaal )?muurvast",
    r"muurvast (?:op|in) de (?:weg|ring|a10|snelweg)",
    # medical
    r"(?:ga|gaan|ging|gaat) (?:bijna |echt )?(?:dood|flauwvallen) van (?:het |de )?"
    r"(?:lachen|honger|dorst|verveling|schaamte|hitte|cringe)",
    r"(?:dood|doodgaan|doodgegaan|flauwgevallen|flauwvallen) van (?:het |de )?"
    r"(?:lachen|honger|dorst|verveling|schaamte|cringe)",
    r"lach(?:en|te)? me (?:dood|rot|kapot)", r"(?:my|mijn) (?:feet|voeten|ears|oren|legs|benen)"
    r" (?:hurt|doen pijn)", r"hurts? so good", r"(?:it|that|this) hurts", r"hurt(?:s)? my",
    r"(?:ehbo|first aid)[- ]?(?:posts?|posten|tents?|stations?|punt(?:en)?|points?"
    r"|vrijwilligers|volunteers|kit|koffer|cursus|course|diploma)",
    r"(?:player|striker|keeper|goalkeeper|captain|speler|spits|aanvoerder|defender)"
    r" (?:is |got |was )?(?:injured|hurt|geblesseerd|gewond)",
    r"injury time", r"blessuretijd", r"slachtoffer van (?:de|het|zijn|haar) (?:eigen )?"
    r"(?:succes|hype|mode)",
    r"ambulance (?:chaser|drivers? strike)",
)

_NEGATIONS = frozenset({"geen", "niet", "niemand", "nee", "no", "not", "never", "nobody",
                        "without", "zonder", "nooit", "isn't", "wasn't", "aren't", "weren't",
                        "nothing", "niks", "niets", "none", "kein", "keine"})
_DENIAL = re.compile(
    _W + r"(?:nepnieuws|nep ?bericht(?:en)?|is nep|fake|hoax|klopt niet|klopt helemaal niks"
    r"|not true|niet waar|niks aan de hand|niets aan de hand|nothing (?:happened|going on)"
    r"|er is niks|er is niets|totally calm|gewoon rustig|alles (?:is )?rustig"
    r"|everything is calm|c'est faux|alles ruhig)" + _E)

_WORD = re.compile(r"[\w']+")


def _alternation(parts: tuple[str, ...]) -> str:
    return "|".join(sorted(parts, key=len, reverse=True))  # longest first wins


_TERM_RE = re.compile(
    "|".join(f"(?P<{cat}>{_W}(?:{_alternation(_TERMS[cat])}){_E})" for cat in CATEGORIES))
_GUARD_RE = re.compile(_W + "(?:" + _alternation(_GUARDS) + ")" + _E)


@dataclass(frozen=True, slots=True)
class SafetyResult:
    is_safety: bool
    category: str | None  # one of CATEGORIES when is_safety
    terms: tuple[str, ...]  # matched terms (folded), in order of appearance, distinct

    def to_dict(self) -> dict[str, object]:
        return {"category": self.category, "terms": list(self.terms)}


NOT_SAFETY = SafetyResult(False, None, ())


def _negated(text: str, start: int) -> bool:
    before = _WORD.findall(text[max(0, start - 40):start])[-3:]
    return any(w in _NEGATIONS or w.endswith("n't") for w in before)


def classify_folded(folded: str) -> SafetyResult:
    """Classify text already passed through :func:`models.text.fold`."""
    if not folded:
        return NOT_SAFETY
    if _TERM_RE.search(folded) is None:  # fast path: most posts
        return NOT_SAFETY
    if _DENIAL.search(folded):
        return NOT_SAFETY
    text = _GUARD_RE.sub(lambda m: " " * len(m.group(0)), folded)
    counts: Counter[str] = Counter()
    terms: dict[str, None] = {}
    for m in _TERM_RE.finditer(text):
        if _negated(text, m.start()):
            continue
        cat = m.lastgroup
        if cat is None:  # pragma: no cover - every alternative is a named group
            continue
        counts[cat] += 1
        terms.setdefault(" ".join(m.group(0).split()), None)
    if not counts:
        return NOT_SAFETY
    best = max(CATEGORIES, key=lambda c: (counts[c], -CATEGORIES.index(c)))
    return SafetyResult(True, best, tuple(terms))


def classify(text: str) -> SafetyResult:
    """(is_safety, category, matched terms) of a post's text."""
    return classify_folded(fold(text))
