"""Deterministic synthetic event traffic: festival chatter, rumours, rebuttals, crowd bursts.

No Dutch event stream with text exists in public, and public sets have no reposts as
separate events, so crowdwatch generates its own traffic for demos, load tests and
end-to-end evaluation. :func:`generate` returns canonical post dicts (see
``models/post.py``) sorted by ``created_at`` plus a ``truth`` dict computed from the
posts that were actually generated; :func:`iter_generate` yields the same posts lazily
(memory stays flat for the background chatter, which is made on the fly).

Same scenario, seed and arguments give byte-identical output: every random choice
comes from :class:`random.Random` instances seeded from ``(seed, component)``, never
from the global generator or ``hash()``.

What is in the traffic (scenario ``rumour-rebuttal`` has all of it):

* background chatter: Dutch first (~70 % nl, ~25 % en, a few de/fr), templates with
  places from the event's ``place_names``, hashtags from its topics, emojis, typos and
  casual spelling; a positive/neutral/negative mood mix (negative for transport
  trouble, crowding and gripes); reposts (``RT @handle: ...`` on twitter, empty text
  on bluesky/mastodon), replies and quotes; ~10-20 % of posts geotagged inside an
  event area; a heavy-tailed (log-normal) follower distribution over a pool of
  repeat authors with a few very active ones; arrivals follow a time-of-day curve
  with slow random variation and one transport-disruption episode;
* routine posts by the event's official accounts, which people repost, answer and quote;
* a planted rumour (a shooting, stabbing or bomb scare in one area): a root claim,
  independent paraphrases, reposts, quotes and replies (enquiries like "klopt dit?",
  "bron?", support and denials), some enquiries tagging the police;
* an official rebuttal by the police that starts several minutes after the rumour
  and spreads in its own cascade (the race can go either way, by seed);
* citizens' questions to official accounts (``@handle`` mentions or replies to their
  posts), part of them answered by a reply from that account;
* a crowd-safety burst in one area over a few minutes (geotagged inside the area's
  polygon, or naming its place names), followed by an official advisory.

Author ids and handles are generated (``user_4821``, ``*.bsky.example``,
``*@mastodon.example``) and every post carries ``"synthetic": true``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from models.event import EventConfig, OfficialAccount, Role, load_event
from models.geo import Geofence

__all__ = [
    "DEFAULT_EVENT_PATH",
    "SCENARIOS",
    "Traffic",
    "TrafficStream",
    "generate",
    "iter_generate",
    "write_traffic",
]

DEFAULT_EVENT_PATH: Final = (
    Path(__file__).resolve().parent.parent / "streams" / "data" / "koningsdag-amsterdam.yaml"
)
GENERATOR: Final = "crowdwatch.models.generate/1"

SCENARIOS: dict[str, str] = {
    "quiet": "Control: festival chatter and routine official posts only; no rumour, "
    "no questions to officials, no safety burst.",
    "rumour-rebuttal": "Everything: chatter, a planted rumour that spreads, a police rebuttal "
    "racing it, questions to official accounts (some answered) and a crowd-safety burst "
    "in one area.",
    "rumour-only": "Chatter and a planted rumour that spreads unopposed (no rebuttal, "
    "no answers).",
    "crowd-safety": "Chatter and a crowd-safety burst in one area, then an official advisory.",
}

_FEATURES: Final[dict[str, frozenset[str]]] = {
    "quiet": frozenset(),
    "rumour-rebuttal": frozenset({"rumour", "rebuttal", "questions", "burst"}),
    "rumour-only": frozenset({"rumour"}),
    "crowd-safety": frozenset({"burst"}),
}

# Share of n_posts per component (before caps); the rest is background chatter.
_F_RUMOUR: Final = 0.06
_F_QUESTIONS: Final = 0.01
_F_BURST: Final = 0.035
_F_ADVISORY_ECHO: Final = 0.15  # of the burst size
# Caps keep the pre-built cascades (held in memory) bounded for very large runs.
_CAP_RUMOUR: Final = 30_000
_CAP_QUESTIONS: Final = 5_000
_CAP_BURST: Final = 10_000

_LANGS: Final = ("nl", "en", "de", "fr")
_LANG_CUM: Final = (0.70, 0.95, 0.98, 1.0)
_PLATFORMS: Final = ("twitter", "bluesky", "mastodon")
_PLATFORM_CUM: Final = (0.55, 0.85, 1.0)
_TWITTER_EPOCH_MS: Final = 1288834974657
_B32: Final = "234567abcdefghijklmnopqrstuvwxyz"
_M64: Final = (1 << 64) - 1

_Author = tuple[str, str, int, bool]  # id, handle, followers, verified
# id, platform, handle, text, lang, mood, official
_Parent = tuple[str, str, str, str, str, str, bool]

# ---------------------------------------------------------------------------------------
# Text material. Moods: "+" positive, "0" neutral, "-" negative. Slots: {place}, {line},
# {tag}. Koningsdag-flavoured festival chatter; places, hashtags and official accounts
# come from the event configuration.
# ---------------------------------------------------------------------------------------
_T = tuple[tuple[str, str], ...]

_BG: Final[dict[str, dict[str, _T]]] = {
    "vibe": {
        "nl": (
            ("+", "wat een drukte bij {place} 🧡"),
            ("+", "Koningsdag in Amsterdam blijft gewoon het mooiste feest van het jaar"),
            ("+", "Heerlijk weertje en iedereen in het oranje, top dag"),
            ("+", "Sfeer op {place} is echt geweldig vandaag"),
            ("+", "zooo gezellig hier bij {place} haha"),
            ("+", "Met de hele vriendengroep op de boot door de grachten 🚤"),
            ("0", "Op weg naar {place}, wie is er nog meer?"),
            ("+", "Beste {tag} ooit!!"),
            ("0", "Net aangekomen bij {place}, even kijken waar iedereen is"),
            ("+", "Oranje boven! 🇳🇱"),
            ("+", "Iedereen zo vrolijk vandaag, daarom hou ik van deze stad"),
            ("0", "Telefoon bijna leeg en nog geen idee waar de rest is lol"),
            ("+", "Genieten op {place} met een drankje in de hand"),
            ("0", "Eerst even chillen bij {place}, straks verder"),
            ("+", "Wat een feest!! Heel de stad is oranje 🧡"),
            ("+", "Elk jaar weer genieten, proost op de koning 🍻"),
            ("+", "Koningsnacht was al top en nu nog een hele dag {tag}"),
        ),
        "en": (
            ("+", "Amazing vibes on the canals {tag}"),
            ("+", "First King's Day in Amsterdam and wow, everyone is wearing orange"),
            ("+", "The whole city is one big party right now"),
            ("+", "Loving the atmosphere at {place}"),
            ("0", "Heading to {place}, anyone else there?"),
            ("+", "Best day of the year in Amsterdam, no contest"),
            ("0", "Just arrived at {place}, where is everyone"),
            ("+", "Boat party on the canals, this is insane 🚤"),
            ("+", "Never seen a city party like this, love it {tag}"),
        ),
        "de": (
            ("+", "Was für eine Stimmung in Amsterdam heute! 🧡"),
            ("+", "Königstag in Amsterdam, alles ist orange"),
            ("0", "Gerade bei {place} angekommen"),
        ),
        "fr": (
            ("+", "Ambiance incroyable à Amsterdam pour la fête du Roi 🧡"),
            ("0", "On arrive à {place}, il y a un monde fou"),
        ),
    },
    "market": {
        "nl": (
            ("+", "Mooie spullen gescoord op de vrijmarkt bij {place}"),
            ("+", "Voor 2 euro een hele stapel boeken op de vrijmarkt 😍"),
            ("0", "Wie weet waar de vrijmarkt het leukst is dit jaar?"),
            ("+", "Onze kids hebben al 15 euro verdiend met limonade verkopen haha"),
            ("-", "Vrijmarkt is echt alleen nog maar rommel tegenwoordig"),
            ("0", "Kleedje ligt klaar bij {place}, kom langs!"),
        ),
        "en": (
            ("+", "Got a vintage jacket for 5 euros at the free market"),
            ("0", "Where's the best flea market spot this year?"),
            ("+", "Kids selling lemonade at {place}, so cute"),
        ),
    },
    "music": {
        "nl": (
            ("+", "DJ bij {place} gaat echt los 🎶"),
            ("+", "Wat een line-up vandaag, kan niet wachten"),
            ("-", "Muziek staat veel te hard bij {place}, kan mezelf niet eens horen"),
            ("+", "Dansen op de gracht, heerlijk"),
        ),
        "en": (
            ("+", "The DJ at {place} is on fire 🎶"),
            ("+", "Dancing on a boat on the canals, life is good"),
        ),
    },
    "crowd": {
        "nl": (
            ("0", "Niet normaal hoe druk het is bij {place}"),
            ("-", "Je kan echt geen kant op bij {place}, veel te vol"),
            ("0", "Druk druk druk bij {place}"),
            ("-", "Waarom gaat iedereen tegelijk naar {place} 🙄"),
            ("0", "Het is vol bij {place}, wij gaan ergens anders heen"),
            ("-", "Overvol bij {place}, kom hier niet naartoe"),
        ),
        "en": (
            ("0", "It's so crowded at {place}"),
            ("-", "{place} is completely packed, don't come here"),
            ("0", "Crowds everywhere, took us 20 minutes to cross {place}"),
        ),
        "de": (("-", "Viel zu voll bei {place}"),),
        "fr": (("-", "Beaucoup trop de monde à {place}"),),
    },
    "transport": {
        "nl": (
            ("-", "tram {line} rijdt niet, lopen maar"),
            ("-", "Metro vol, niet te doen"),
            ("-", "Geen tram meer richting {place}, alles staat vast"),
            ("-", "Trein naar huis is overvol 😩"),
            ("-", "Omleiding tram {line}, niemand weet waar ie stopt"),
            ("-", "40 minuten vertraging, de NS weer 🙃"),
            ("0", "Tram {line} rijdt weer, voor wie het wil weten"),
            ("-", "Station is afgesloten, wat nu??"),
            ("0", "Fiets maar thuis laten, je komt er niet door"),
        ),
        "en": (
            ("-", "Trams not running to {place}, walking it is"),
            ("-", "Central station is absolutely packed, trains delayed"),
            ("-", "Tram {line} cancelled, great 🙄"),
            ("0", "Tip: walk, the trams are all full"),
        ),
        "de": (("-", "Keine Straßenbahn mehr, wir laufen"),),
    },
    "weather_sun": {
        "nl": (
            ("+", "Zonnetje erbij, kan niet beter ☀️"),
            ("-", "Veel te heet, drink genoeg water mensen"),
            ("+", "Heerlijk in het zonnetje bij {place}"),
        ),
        "en": (("+", "Sunshine and orange everywhere ☀️"),),
    },
    "weather_rain": {
        "nl": (
            ("-", "Regen... natuurlijk weer op koningsdag"),
            ("-", "Zeiknat geregend bij {place} 🙄"),
            ("0", "Paraplu meenemen, het gaat zo regenen"),
        ),
        "en": (("-", "Rain on King's Day, classic Dutch weather"),),
    },
    "food": {
        "nl": (
            ("+", "Beste tosti ooit bij een kraampje bij {place}"),
            ("+", "Biertje in de zon, wat wil je nog meer 🍻"),
            ("-", "7 euro voor een biertje?? serieus"),
            ("0", "Waar kan je hier een beetje normaal eten?"),
            ("+", "Oranjebitter met de buren, traditie"),
        ),
        "en": (
            ("+", "Cheapest beer I've ever had at {place} 🍻"),
            ("-", "Queue for food at {place} is insane"),
        ),
    },
    "misc": {
        "nl": (
            ("0", "Iemand een oplader bij {place}?"),
            ("0", "Zijn er nog mensen bij {place}? Laat even weten"),
            ("0", "Foto's van vandaag komen later"),
            ("-", "Bereik is echt slecht hier, berichten komen niet door"),
        ),
        "en": (
            ("-", "No phone signal at {place} at all"),
            ("0", "Lost my friends, meeting at {place}"),
        ),
    },
    "gripe": {
        "nl": (
            ("-", "Zoveel afval overal 🤮"),
            ("-", "Rij voor de wc is belachelijk"),
            ("-", "Mensen die in de gracht plassen, echt goor"),
            ("-", "Veel te veel dronken toeristen vandaag"),
            ("-", "Buren hebben de hele nacht herrie gemaakt, bedankt koningsnacht"),
        ),
        "en": (
            ("-", "Way too many drunk people already"),
            ("-", "The toilet queues are ridiculous"),
        ),
    },
}
_BG_CATEGORIES: Final = (
    ("vibe", 0.35), ("market", 0.12), ("music", 0.12), ("crowd", 0.10), ("transport", 0.07),
    ("weather", 0.05), ("food", 0.09), ("misc", 0.06), ("gripe", 0.04),
)

_BG_REPLY: Final[dict[str, _T]] = {
    "nl": (
        ("+", "haha echt 😂"), ("+", "Gezellig!! 🧡"), ("+", "Jaloers 😍"), ("0", "Waar precies?"),
        ("0", "Ik sta er ook!"), ("0", "Wij zijn er over 10 min"), ("-", "Sterkte 😬"),
        ("+", "Veel plezier!"), ("0", "Haha herkenbaar"), ("-", "Hier precies hetzelfde, ramp"),
    ),
    "en": (
        ("0", "Same here!"), ("+", "Enjoy!"), ("+", "Haha so true"), ("0", "Where exactly?"),
        ("+", "Looks amazing"),
    ),
    "de": (("+", "Viel Spaß!"),),
    "fr": (("+", "Trop bien !"),),
}
_BG_QUOTE: Final[dict[str, _T]] = {
    "nl": (
        ("0", "Dit 👇"), ("+", "Zo herkenbaar haha"), ("+", "Precies dit"),
        ("-", "Ja nee, dit dus"), ("+", "Hahaha geweldig"),
    ),
    "en": (("+", "This is the way to do King's Day"), ("+", "Yes!!"), ("0", "Exactly this")),
    "de": (("+", "Genau so!"),),
    "fr": (("+", "Exactement !"),),
}
# Replies to routine official posts: feedback, never questions (the control has none).
_OFFICIAL_FEEDBACK: Final[dict[str, _T]] = {
    "nl": (
        ("+", "Top, dank voor de info!"), ("+", "Goed bezig 👮"), ("+", "Dank jullie wel!"),
        ("+", "Fijn dat jullie er zijn"), ("-", "Dat had wel eerder gemogen 🙄"),
        ("0", "Gedeeld."),
    ),
    "en": (("+", "Thanks for the update!"), ("+", "Great job 👏"), ("0", "Noted, thanks")),
}

_ROUTINE: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "police": {
        "nl": (
            "Het is druk in de binnenstad. Let op je spullen en op elkaar. Fijne {tag}!",
            "Zakkenrollers actief rond {place}. Houd je telefoon en portemonnee goed vast.",
            "Kind kwijt? Meld je bij een van onze collega's of bij de politiepost bij {place}.",
            "Onze collega's lopen vandaag in de hele stad. Spreek ze gerust aan. {tag}",
        ),
        "en": ("Busy in the city centre today. Keep an eye on your belongings. {tag}",),
    },
    "municipality": {
        "nl": (
            "{place} is afgesloten vanwege drukte. Kies een andere route.",
            "Openbare toiletten vind je onder meer bij {place}. Fijne {tag}!",
            "De vrijmarkt stopt om 20.00 uur. Neem je spullen en afval mee naar huis.",
        ),
        "en": ("{place} is closed due to crowding. Please take another route.",),
    },
    "transport": {
        "nl": (
            "Tram {line} rijdt vanwege drukte niet via {place}. Er rijdt een omleiding.",
            "Het is erg druk op de stations. Volg de aanwijzingen van onze medewerkers op.",
            "Tram {line} rijdt weer volgens de normale route.",
        ),
        "en": ("Tram {line} is diverted due to the crowds around {place}.",),
    },
    "fire": {"nl": ("Brandweer is aanwezig bij {place}. Houd doorgangen en stoepen vrij.",)},
    "safety_region": {
        "nl": (
            "Het is warm. Drink genoeg water en let op elkaar. {tag}",
            "Voel je je niet lekker? Bij {place} is een EHBO-post.",
        ),
        "en": ("Feeling unwell? There is a first aid post at {place}.",),
    },
    "organiser": {
        "nl": (
            "Het podium bij {place} gaat zo beginnen. Veel plezier! {tag}",
            "{place} is vol. Ga naar een van de andere locaties.",
        ),
        "en": ("The stage at {place} starts soon. Enjoy {tag}!",),
    },
}
_ROUTINE_ROLE_WEIGHTS: Final = (
    ("police", 0.30), ("transport", 0.25), ("municipality", 0.20), ("organiser", 0.10),
    ("safety_region", 0.10), ("fire", 0.05),
)
_OFFICIAL_FOLLOWERS: Final = {
    "police": 310_000, "municipality": 190_000, "transport": 150_000, "fire": 95_000,
    "safety_region": 45_000, "ambulance": 40_000, "organiser": 30_000, "other": 20_000,
}

# Citizens' questions to official accounts and the answers, by the account's role.
_QUESTIONS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "police": {
        "nl": (
            "waar kan ik mijn verloren kind melden? Hij is 6 en draagt een oranje shirt",
            "mijn portemonnee is gerold bij {place}, waar kan ik aangifte doen?",
            "is het nog veilig bij {place}?",
            "waar is de dichtstbijzijnde politiepost bij {place}?",
            "mijn dochter is kwijt bij {place}, wat moet ik doen??",
        ),
        "en": (
            "where can I report a lost child?",
            "my phone got stolen at {place}, where do I go?",
            "is it safe to go to {place} right now?",
        ),
    },
    "transport": {
        "nl": (
            "rijdt tram {line} nog?",
            "gaat de metro nog vanaf {place}?",
            "waarom stopt tram {line} niet bij {place}?",
            "hoe kom ik vanavond nog thuis vanaf {place}?",
        ),
        "en": ("is tram {line} still running?", "how do I get from {place} to the station?"),
    },
    "municipality": {
        "nl": (
            "waar zijn de openbare toiletten bij {place}?",
            "wanneer wordt het afval bij {place} opgehaald?",
            "tot hoe laat mag de vrijmarkt bij {place}?",
        ),
        "en": ("where are the public toilets near {place}?",),
    },
    "organiser": {
        "nl": ("hoe laat begint het podium bij {place}?", "is {place} afgesloten?"),
        "en": ("what time does the music stop at {place}?",),
    },
    "fire": {
        "nl": ("ik zie rook bij {place}, weten jullie ervan?",),
        "en": ("is there a fire near {place}? lots of smoke",),
    },
    "safety_region": {
        "nl": ("zijn er EHBO-posten bij {place}?", "waar kan ik vermiste personen melden?"),
        "en": ("where is the nearest first aid post near {place}?",),
    },
}
_QUESTION_ROLE_WEIGHTS: Final = (
    ("police", 0.35), ("transport", 0.25), ("municipality", 0.20), ("organiser", 0.08),
    ("safety_region", 0.07), ("fire", 0.05),
)
_ANSWERS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "police": {
        "nl": (
            "Ga naar de politiepost bij {place} of spreek een collega aan. Bij spoed altijd 112.",
            "Bedankt voor je bericht. Onze collega's ter plaatse zijn op de hoogte.",
        ),
        "en": ("Please go to the police post near {place} or talk to an officer. "
               "In an emergency call 112.",),
    },
    "transport": {
        "nl": ("Tram {line} rijdt vanwege drukte via een omleiding. Kijk op de site voor actuele "
               "informatie.",),
        "en": ("Tram {line} is diverted because of the crowds. Check our site for live updates.",),
    },
    "municipality": {
        "nl": ("Bij {place} staan openbare toiletten. Fijne dag!",
               "Dank voor je melding, we geven het door."),
        "en": ("There are public toilets at {place}. Enjoy your day!",),
    },
    "organiser": {
        "nl": ("Kijk op onze site voor het programma en actuele afsluitingen. Veel plezier!",),
        "en": ("Check our site for the programme and closures. Enjoy!",),
    },
    "fire": {
        "nl": ("Dank voor je melding, we zijn ter plaatse.",),
        "en": ("Thanks for reporting, a crew is on site.",),
    },
    "safety_region": {
        "nl": ("Er is een EHBO-post bij {place}. Bij spoed altijd 112.",),
        "en": ("There is a first aid post at {place}. In an emergency call 112.",),
    },
}

# The planted rumour: one of a few claims, with everything people say about it.
_CLAIMS: Final[dict[str, dict[str, dict[str, tuple[str, ...]]]]] = {
    "shooting": {
        "root": {
            "nl": ("Er is een schietpartij bij {place}, iedereen rent weg!",
                   "SCHIETPARTIJ bij {place}!!! Iedereen rent weg, blijf uit de buurt"),
            "en": ("Shots fired at {place}, everyone is running!",),
        },
        "variant": {
            "nl": (
                "Er is geschoten bij {place}?? Mensen rennen alle kanten op",
                "Hoor net dat er een schietpartij is bij {place}, blijf weg!!",
                "Schoten gehoord bij {place}, iedereen in paniek",
                "Vriendin stuurt net dat er geschoten wordt bij {place} 😨",
                "Er schijnt een schutter bij {place} te zijn, pas op mensen",
            ),
            "en": (
                "Shooting at {place} Amsterdam?? people running everywhere",
                "Heard there's a shooter near {place}, stay away!!",
                "Gunshots at {place}, everyone panicking",
            ),
            "de": ("Schüsse bei {place} in Amsterdam?! Alle rennen weg",),
            "fr": ("Des coups de feu à {place} à Amsterdam ?? Tout le monde court",),
        },
        "support": {
            "nl": ("Ik hoorde ook knallen bij {place}!!", "ja mensen renden echt weg hier",
                   "Klopt, ik zag politie met zwaailichten richting {place}"),
            "en": ("My friend is there, says people are running", "I heard the bangs too, scary"),
        },
        "police": {
            "nl": ("klopt het dat er geschoten is bij {place}?",
                   "is er een schietpartij bij {place}?? mensen rennen weg"),
            "en": ("is there a shooting at {place}?? please confirm",),
        },
        "rebuttal": {
            "nl": ("Er is GEEN schietpartij bij {place}. Berichten hierover op social media "
                   "kloppen niet. Blijf rustig, volg de aanwijzingen van onze collega's op en "
                   "deel geen onbevestigde berichten.",),
            "en": ("There has been NO shooting at {place}. Reports about this on social media "
                   "are false. Please stay calm and follow instructions from officers.",),
        },
        "answer": {
            "nl": ("Er is geen schietpartij, zie ons bericht. Deel geen onbevestigde berichten.",),
            "en": ("There is no shooting, see our update. Please don't share unconfirmed "
                   "reports.",),
        },
    },
    "stabbing": {
        "root": {
            "nl": ("Steekpartij bij {place}, er ligt iemand op de grond en mensen rennen weg!",),
            "en": ("Someone got stabbed at {place}, people are running!",),
        },
        "variant": {
            "nl": (
                "Er is iemand neergestoken bij {place}?? Alles wordt afgezet",
                "Hoor dat er een steekpartij was bij {place}, pas op!!",
                "Iemand met een mes bij {place}, iedereen rent weg 😨",
            ),
            "en": ("Stabbing at {place} Amsterdam?? stay away", "Guy with a knife at {place}!!"),
            "de": ("Messerangriff bei {place} in Amsterdam?!",),
            "fr": ("Une attaque au couteau à {place} ??",),
        },
        "support": {
            "nl": ("Ja ik zag een ambulance richting {place} gaan", "Klopt, het is daar chaos"),
            "en": ("Yes there are ambulances heading to {place}",),
        },
        "police": {
            "nl": ("klopt het dat er iemand is neergestoken bij {place}?",),
            "en": ("was someone stabbed at {place}? please confirm",),
        },
        "rebuttal": {
            "nl": ("Er heeft GEEN steekpartij plaatsgevonden bij {place}. De berichten hierover "
                   "kloppen niet. Iemand is onwel geworden en wordt verzorgd. Deel geen "
                   "onbevestigde berichten.",),
            "en": ("There has been NO stabbing at {place}. A person felt unwell and is being "
                   "cared for. Please do not share unconfirmed reports.",),
        },
        "answer": {
            "nl": ("Er is geen steekpartij geweest, zie ons bericht.",),
            "en": ("There was no stabbing, see our update.",),
        },
    },
    "bomb": {
        "root": {
            "nl": ("Bommelding bij {place}, ze zijn alles aan het ontruimen!! Ga daar weg",),
            "en": ("Bomb threat at {place}, they're evacuating everything!!",),
        },
        "variant": {
            "nl": (
                "Verdacht pakketje bij {place}, alles wordt ontruimd??",
                "Hoor net van een bommelding bij {place}, blijf weg mensen",
                "Ze ontruimen {place}, schijnt een bom te liggen 😨",
            ),
            "en": ("Bomb scare at {place} Amsterdam?? area being evacuated",),
            "de": ("Bombendrohung bei {place} in Amsterdam?!",),
            "fr": ("Alerte à la bombe à {place} ??",),
        },
        "support": {
            "nl": ("Ja er staan overal hekken bij {place}", "Klopt, politie stuurt iedereen weg"),
            "en": ("Yes police are pushing people back at {place}",),
        },
        "police": {
            "nl": ("is er een bommelding bij {place}?",),
            "en": ("is there a bomb threat at {place}??",),
        },
        "rebuttal": {
            "nl": ("Er is GEEN bommelding bij {place}. Het gebied is alleen afgesloten vanwege "
                   "drukte. Deel geen onbevestigde berichten.",),
            "en": ("There is NO bomb threat at {place}. The area is closed because of crowding "
                   "only. Please do not share unconfirmed reports.",),
        },
        "answer": {
            "nl": ("Er is geen bommelding, het is alleen erg druk. Zie ons bericht.",),
            "en": ("There is no bomb threat, it is just very busy. See our update.",),
        },
    },
}
_ENQUIRY: Final[dict[str, tuple[str, ...]]] = {
    "nl": ("klopt dit?", "is dit waar?", "bron?", "Iemand die dit kan bevestigen?", "Is dit echt??",
           "Wat is hier van waar?", "Weet iemand meer?"),
    "en": ("is this true?", "source?", "any confirmation?", "Is this real??"),
    "de": ("Stimmt das?",),
    "fr": ("C'est vrai ?",),
}
_DENY: Final[dict[str, tuple[str, ...]]] = {
    "nl": ("nepnieuws", "Fake. Ik sta bij {place} en er is niks aan de hand",
           "klopt niet, het was gewoon vuurwerk", "Niet delen als je het niet zeker weet!",
           "Onzin, gewoon rustig hier", "klopt niet"),
    "en": ("fake", "Fake news, I'm at {place} right now and it's totally calm",
           "not true, it was fireworks"),
    "de": ("Fake, hier ist alles ruhig",),
    "fr": ("C'est faux, tout est calme ici",),
}
_DENY_LATE: Final[dict[str, tuple[str, ...]]] = {
    "nl": ("klopt niet, politie zegt dat er niks aan de hand is",
           "Politie heeft al gezegd dat het nep is", "Nepnieuws, zie bericht van de politie"),
    "en": ("Police already said it's fake", "Not true, police confirmed nothing happened"),
}
_COMMENT: Final[dict[str, tuple[str, ...]]] = {
    "nl": ("Stay safe iedereen 🙏", "Wat eng 😰", "Hopelijk is iedereen ok", "Omg"),
    "en": ("Stay safe everyone", "omg 😰", "Hope everyone is ok"),
    "de": ("Passt auf euch auf!",),
    "fr": ("Faites attention à vous",),
}
_RUMOUR_QUOTE: Final[dict[str, _T]] = {
    "nl": (("-", "WTF?? 😳"), ("-", "Blijf weg bij {place} mensen!"), ("0", "Is dit bevestigd?"),
           ("-", "Dit is toch niet waar 😨"), ("0", "Iemand?")),
    "en": (("-", "Please be careful everyone"), ("0", "Can anyone confirm this?"),
           ("-", "Scary stuff 😳")),
    "de": (("-", "Oh nein 😳"),),
    "fr": (("-", "Oh non 😳"),),
}
_RUMOUR_QUOTE_LATE: Final[dict[str, _T]] = {
    "nl": (("0", "Dit is dus nep, politie heeft het ontkend"),
           ("-", "Stop met delen van dit soort onzin")),
    "en": (("0", "This is fake, police confirmed"),),
}
_REBUTTAL_REPLY: Final[dict[str, _T]] = {
    "nl": (("+", "Dank voor de duidelijkheid 🙏"), ("+", "Gelukkig! Ik schrok me dood"),
           ("-", "Waarom duurde dit zo lang?"), ("0", "Maar wat waren die knallen dan?"),
           ("+", "Top dat jullie dit zo snel melden 👮"), ("0", "Zie je, niet alles geloven")),
    "en": (("+", "Thanks for clearing that up"), ("+", "Good to know, was really worried"),
           ("0", "So what was the loud bang then?")),
    "de": (("+", "Danke für die Info"),),
    "fr": (("+", "Merci pour l'info"),),
}
_REBUTTAL_QUOTE: Final[dict[str, _T]] = {
    "nl": (("0", "Nepnieuws dus. Deel dit in plaats van die onzin 👇"),
           ("-", "Stop met het delen van die nepberichten mensen"), ("+", "Gelukkig 🙏")),
    "en": (("0", "Official: it's fake. Please share this instead."),),
}

_BURST_PLACE: Final[dict[str, tuple[str, ...]]] = {
    "nl": (
        "Het is echt niet normaal meer bij {place}, mensen worden verdrukt 😰",
        "Gedrang bij {place}, je kan geen kant op",
        "Paniek bij {place}!! Iemand is onwel geworden",
        "EHBO nodig bij {place}, meisje flauwgevallen",
        "Levensgevaarlijk druk bij {place}, ga hier weg",
        "Veel te vol bij {place}, mensen klimmen over de hekken",
        "Verdrukking bij {place}, kinderen huilen",
        "Er zijn mensen onwel geworden bij {place}, ambulance komt er niet door",
    ),
    "en": (
        "Crush at {place}, people fainting, can't move 😱",
        "It's dangerously packed at {place}, someone just collapsed",
        "Panic at {place}, we need medics",
        "Way too crowded at {place}, people getting squeezed against the barriers",
    ),
    "de": ("Gedränge bei {place}, Leute kippen um", "Panik bei {place}, viel zu voll"),
    "fr": ("Bousculade à {place}, des gens font des malaises",),
}
_BURST_GEO: Final[dict[str, tuple[str, ...]]] = {
    "nl": ("Help, ik word hier geplet, niemand kan vooruit of achteruit",
           "Iemand naast me is flauwgevallen, we kunnen er niet uit",
           "Dit is echt eng, veel te veel mensen hier 😰"),
    "en": ("Someone fainted next to me, we can't get out", "This is a crush, people are panicking"),
    "de": ("Jemand ist neben mir umgekippt, wir kommen nicht raus",),
    "fr": ("Quelqu'un s'est évanoui à côté de moi",),
}
_BURST_REPLY: Final[dict[str, tuple[str, ...]]] = {
    "nl": ("hier ook, {place} zit muurvast", "Ik sta er ook, echt eng 😟 ({place})",
           "Blijf weg bij {place} mensen!", "Zelfde bij {place}, ik kan geen kant op"),
    "en": ("Same here at {place}, stay away", "Avoid {place}, it's dangerous"),
    "de": ("Meidet {place}!",),
    "fr": ("Évitez {place} !",),
}
_ADVISORY: Final[dict[str, str]] = {
    "nl": "Het is erg druk bij {place}. Vermijd het gebied en volg de aanwijzingen van "
          "medewerkers en politie op.",
    "en": "It is very crowded at {place}. Avoid the area and follow instructions from staff "
          "and police.",
}
_ADVISORY_ECHO: Final[dict[str, _T]] = {
    "nl": (("+", "Dank voor de waarschuwing"), ("-", "Eindelijk, het was daar levensgevaarlijk"),
           ("-", "Te laat..."), ("0", "Gedeeld, iedereen weg daar")),
    "en": (("+", "Thanks for the warning"),),
}

_EMOJI: Final = {
    "+": ("🧡", "🎉", "👑", "🍻", "😍", "🥳", "☀️", "🎶", "🇳🇱", "🔥"),
    "0": ("📍", "👀", "🚶", "📸"),
    "-": ("😩", "🙄", "😤", "😡", "😰"),
}
_LINES: Final = ("2", "4", "12", "13", "14", "17", "19", "24", "26")
_HANDLE_PREFIXES: Final = ("user", "user", "user", "oranjefan", "feestganger", "amsterdammer",
                           "visitor", "kingsdayfan")
# Relative post rate by local hour of day (festival day: quiet night, busy afternoon).
_DIURNAL: Final = (0.35, 0.25, 0.15, 0.08, 0.05, 0.05, 0.08, 0.15, 0.35, 0.6, 0.8, 0.95,
                   1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.8, 0.8, 0.75, 0.7, 0.6, 0.5)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Traffic:
    """Generated posts (canonical dicts, sorted by ``created_at``) and their ground truth."""

    posts: list[dict[str, Any]]
    truth: dict[str, Any]


class TrafficStream:
    """Posts in time order, made lazily; :attr:`truth` is complete once exhausted."""

    def __init__(self, gen: _Generator) -> None:
        self._gen = gen
        self._it = gen.run()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._it

    def __next__(self) -> dict[str, Any]:
        return next(self._it)

    @property
    def done(self) -> bool:
        return self._gen.finished

    @property
    def truth(self) -> dict[str, Any]:
        """The ground truth; raises :class:`RuntimeError` before the stream is exhausted."""
        if not self._gen.finished:
            raise RuntimeError("truth is complete only after every post has been consumed")
        return self._gen.truth()


def iter_generate(
    scenario: str,
    *,
    seed: int,
    n_posts: int = 5000,
    event: EventConfig | None = None,
    start: datetime | None = None,
    duration_minutes: float = 120.0,
) -> TrafficStream:
    """Like :func:`generate` but yields the posts lazily, for big runs."""
    if scenario not in SCENARIOS:
        raise ValueError(
            f"unknown scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}"
        )
    if isinstance(n_posts, bool) or not isinstance(n_posts, int) or n_posts < 0:
        raise ValueError(f"n_posts must be a non-negative integer, got {n_posts!r}")
    if not (math.isfinite(duration_minutes) and 1.0 <= duration_minutes <= 14 * 24 * 60):
        raise ValueError(f"duration_minutes must be between 1 and 20160, got {duration_minutes}")
    ev = event if event is not None else _default_event()
    begin = start if start is not None else ev.window.start
    if begin.tzinfo is None or begin.utcoffset() is None:
        raise ValueError("start needs a UTC offset (an aware datetime)")
    if not 2019 <= begin.astimezone(UTC).year <= 2100:
        # keeps the platform id formats apart (19-digit twitter, 18-digit mastodon ids)
        raise ValueError(f"start must lie in the years 2019..2100, got {begin.isoformat()}")
    return TrafficStream(_Generator(scenario, int(seed), n_posts, ev, begin, duration_minutes))


def generate(
    scenario: str,
    *,
    seed: int,
    n_posts: int = 5000,
    event: EventConfig | None = None,
    start: datetime | None = None,
    duration_minutes: float = 120.0,
) -> Traffic:
    """Generate ``n_posts`` posts of ``scenario`` over ``duration_minutes`` from ``start``.

    ``event`` defaults to the packaged Koningsdag example, ``start`` to its window start.
    Deterministic: same arguments, same output. Raises :class:`ValueError` for an
    unknown scenario or invalid arguments.
    """
    stream = iter_generate(
        scenario, seed=seed, n_posts=n_posts, event=event, start=start,
        duration_minutes=duration_minutes,
    )
    posts = list(stream)
    return Traffic(posts=posts, truth=stream.truth)


def write_traffic(
    traffic: Traffic | TrafficStream, out_dir: Path, *, stem: str | None = None
) -> tuple[Path, Path]:
    """Write ``posts.jsonl`` and ``truth.json`` (or ``{stem}.posts.jsonl`` / ``{stem}.truth.json``).

    A :class:`TrafficStream` is written as it is generated (flat memory for big runs).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    posts_path = out_dir / (f"{stem}.posts.jsonl" if stem else "posts.jsonl")
    truth_path = out_dir / (f"{stem}.truth.json" if stem else "truth.json")
    posts = traffic.posts if isinstance(traffic, Traffic) else traffic
    dumps = json.dumps
    with posts_path.open("w", encoding="utf-8", newline="\n") as fh:
        buf: list[str] = []
        for post in posts:
            buf.append(dumps(post, ensure_ascii=False))
            if len(buf) >= 4096:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
    truth_path.write_text(
        json.dumps(traffic.truth, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    return posts_path, truth_path


@lru_cache(maxsize=1)
def _default_event() -> EventConfig:
    return load_event(DEFAULT_EVENT_PATH)


# ---------------------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------------------
def _mix64(x: int) -> int:
    """splitmix64 finaliser: a bijection on 64-bit integers, used for stable author traits."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _b32(value: int, chars: int) -> str:
    return "".join(_B32[(value >> s) & 31] for s in range(5 * (chars - 1), -1, -5))


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _pick(rng: random.Random, items: Sequence[str]) -> str:
    return items[int(rng.random() * len(items))]


def _pick_t(rng: random.Random, items: _T) -> tuple[str, str]:
    return items[int(rng.random() * len(items))]


def _cum(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    out: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def _choose(rng: random.Random, names: Sequence[str], cum: Sequence[float]) -> str:
    r = rng.random()
    for name, c in zip(names, cum, strict=True):
        if r < c:
            return name
    return names[-1]


def _display(place: str, rng: random.Random) -> str:
    """Place names are lowercase in the config; people capitalise them about half the time."""
    if rng.random() < 0.5:
        return place
    return " ".join(w if w in ("de", "het", "van", "the") else w[:1].upper() + w[1:]
                    for w in place.split(" "))


def _mention(handle: str) -> str:
    return "@" + handle


class _Rec:
    """One pre-built (cascade or scheduled) post, rendered except for its id."""

    __slots__ = ("author", "entry", "geo", "id", "kind", "lang", "lang_out", "mood",
                 "official", "parent", "platform", "rebuts", "role", "seq", "t", "text",
                 "to_account")

    def __init__(
        self, t: float, role: str, kind: str, platform: str, author: _Author, lang: str,
        text: str, mood: str, parent: _Rec | None = None,
        geo: tuple[float, float] | None = None, official: OfficialAccount | None = None,
    ) -> None:
        self.t = t
        self.seq = 0
        self.role = role
        self.kind = kind
        self.platform = platform
        self.author = author
        self.lang = lang
        self.lang_out: str | None = lang
        self.text = text
        self.mood = mood
        self.parent = parent
        self.geo = geo
        self.official = official
        self.id = ""
        self.to_account: OfficialAccount | None = None
        self.rebuts: list[_Rec] | None = None  # None: not a rebuttal; []: the whole rumour
        self.entry: dict[str, Any] | None = None


class _Generator:
    def __init__(self, scenario: str, seed: int, n_posts: int, event: EventConfig,
                 start: datetime, duration_minutes: float) -> None:
        self.scenario = scenario
        self.features = _FEATURES[scenario]
        self.seed = seed
        self.n = n_posts
        self.event = event
        self.start = start.astimezone(UTC)
        self.t0 = self.start.timestamp()
        self.duration = float(duration_minutes)
        self.end_s = self.duration * 60.0
        self.scale = min(1.0, self.duration / 60.0)  # compress cascades in short windows
        self.finished = False
        self.rng_salt = _stable_int(f"crowdwatch-generate:{seed}") & _M64

        self.areas = list(event.areas)
        self.fences: list[Geofence] = event.geofences()
        self.places = [list(a.place_names) or [a.name.lower()] for a in self.areas]
        tags = [t for topic in event.topics for t in topic.terms if t.startswith("#")]
        if not tags:
            tags = ["#" + event.name.replace("-", "")]
        self.tags = [*tags, f"{tags[0]}{self.start.year}"]
        self.officials = list(event.official_accounts)
        self.official_author: dict[str, _Author] = {}
        for acc in self.officials:
            base = _OFFICIAL_FOLLOWERS.get(acc.role.value, 20_000)
            h = _stable_int(f"{acc.platform}:{acc.handle}")
            followers = base if acc.platform == "twitter" else base // 12
            followers += h % max(1, followers // 20)
            self.official_author[f"{acc.platform}:{acc.handle}"] = (
                str(10**11 + h % (9 * 10**11)), acc.handle, followers, True,
            )

        total_authors = max(30, int(n_posts / 3.2))
        shares = (0.55, 0.30, 0.15)
        self.pool_sizes = [min(900_000, max(10, int(total_authors * s))) for s in shares]
        self.author_cache: dict[int, _Author] = {}
        # Handle numbers are a permutation of the pool index (unique, not activity-ranked).
        self.handle_modulus = 10 ** max(4, len(str(max(self.pool_sizes))) + 1)

        r = self._rng("setup")
        self.weather = "weather_sun" if r.random() < 0.65 else "weather_rain"
        self.episode: tuple[float, float] | None = None
        if r.random() < 0.75:
            length = r.uniform(8.0, 20.0) * 60.0 * self.scale
            begin = r.uniform(0.1, 0.8) * self.end_s
            self.episode = (begin, min(self.end_s, begin + length))

        # Prepared (non-background) posts, then the background fills the rest.
        self.budget = n_posts // 2
        self.prepared: list[_Rec] = []
        self.rumour_info: dict[str, Any] | None = None
        self.burst_info: dict[str, Any] | None = None
        self.burst_window: tuple[float, float] | None = None
        self._prepare()
        self.prepared.sort(key=lambda rec: (rec.t, rec.seq))
        self.n_background = n_posts - len(self.prepared)
        self._bins(r)

        # Truth accumulators (filled as posts are emitted).
        self.k = 0
        self.by_lang: dict[str, int] = {}
        self.by_true_lang: dict[str, int] = {}
        self.by_platform: dict[str, int] = {}
        self.by_kind: dict[str, int] = {}
        self.by_mood: dict[str, int] = {}
        self.geotagged = 0
        self.official_posts: dict[str, dict[str, Any]] = {}
        self.rumour_posts: list[str] = []
        self.rumour_roots: list[str] = []
        self.rebuttal_posts: list[str] = []
        self.rebuttals: list[tuple[dict[str, Any], _Rec]] = []
        self.questions: list[dict[str, Any]] = []
        self.burst_ids: list[str] = []
        self.burst_geo = 0
        self.burst_first = ""
        self.burst_last = ""
        self.advisory_id: str | None = None
        self.recent: list[_Parent | None] = [None]
        self.recent_n = 0
        self.popular: list[_Parent | None] = [None] * 300
        self.popular_n = 0
        self.recent_official: list[tuple[float, _Parent]] = []
        self._last_sec = -1
        self._last_iso = ""

    # -- randomness -------------------------------------------------------------------
    def _rng(self, component: str) -> random.Random:
        return random.Random(f"crowdwatch:{self.scenario}:{self.seed}:{component}")  # noqa: S311

    def _take(self, k: int) -> int:
        granted = max(0, min(k, self.budget))
        self.budget -= granted
        return granted

    def _author(self, pidx: int, idx: int) -> _Author:
        key = (pidx << 32) | idx
        cached = self.author_cache.get(key)
        if cached is not None:
            return cached
        h1 = _mix64(self.rng_salt ^ key)
        h2 = _mix64(h1 ^ 0x5DEECE66D)
        u1 = ((h1 >> 11) + 1) / 9007199254740993.0
        u2 = (h2 >> 11) / 9007199254740992.0
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        followers = min(5_000_000, int(math.exp(5.07 + 1.75 * z)))
        verified = (followers >= 20_000 and (h2 & 3) == 0) or (h2 >> 3) % 300 == 0
        prefix = _HANDLE_PREFIXES[(h2 >> 12) % len(_HANDLE_PREFIXES)]
        modulus = self.handle_modulus
        number = (idx * 7919 + (self.rng_salt % modulus)) % modulus
        bij = (idx * 2654435761 + (self.rng_salt >> 20)) % (1 << 32)
        if pidx == 0:
            author: _Author = (str(10**9 + bij), f"{prefix}_{number}", followers, verified)
        elif pidx == 1:
            did = "did:plc:" + (_b32(_mix64(key ^ self.rng_salt), 13)
                                + _b32(h2, 13))[:24]
            author = (did, f"{prefix.replace('_', '-')}-{number}.bsky.example", followers,
                      verified)
        else:
            author = (str(109_000_000_000_000_000 + bij), f"{prefix}_{number}@mastodon.example",
                      followers, False)
        if len(self.author_cache) > 200_000:
            self.author_cache.clear()
        self.author_cache[key] = author
        return author

    def _citizen(self, pidx: int, rng: random.Random, min_followers: int = 0) -> _Author:
        n = self.pool_sizes[pidx]
        best = self._author(pidx, int(n * rng.random() ** 1.6))
        tries = 0
        while best[2] < min_followers and tries < 40:
            cand = self._author(pidx, int(n * rng.random()))
            if cand[2] > best[2]:
                best = cand
            tries += 1
        return best

    def _lang(self, rng: random.Random, cum: Sequence[float] = _LANG_CUM) -> str:
        return _choose(rng, _LANGS, cum)

    def _platform_idx(self, rng: random.Random) -> int:
        r = rng.random()
        return 0 if r < _PLATFORM_CUM[0] else (1 if r < _PLATFORM_CUM[1] else 2)

    def _lang_out(self, rng: random.Random, platform: str, lang: str, kind: str) -> str | None:
        """``lang`` as the platform would report it: sometimes missing, rarely wrong."""
        if kind == "repost" and platform != "twitter":
            return None
        r = rng.random()
        if platform == "twitter":
            if r < 0.03:
                return None
            if r < 0.05:
                others = [x for x in ("nl", "en", "de") if x != lang]
                return others[int(rng.random() * len(others))]
            return lang
        if platform == "bluesky":
            return None if r < 0.08 else lang
        return None if r < 0.15 else lang

    def _place(self, rng: random.Random) -> tuple[int, str]:
        if not self.areas:
            return -1, self.event.name.split("-")[-1]
        ai = int(rng.random() * len(self.areas))
        return ai, _display(_pick(rng, self.places[ai]), rng)

    def _place_in(self, ai: int, rng: random.Random) -> str:
        if ai < 0:
            return self.event.name.split("-")[-1]
        return _display(_pick(rng, self.places[ai]), rng)

    def _geo(self, ai: int, rng: random.Random) -> tuple[float, float] | None:
        """A uniform point inside area ``ai`` (rejection sampling on its bounding box)."""
        if ai < 0:
            return None
        fence = self.fences[ai]
        min_lon, min_lat, max_lon, max_lat = fence.bbox
        for _ in range(200):
            lon = round(min_lon + rng.random() * (max_lon - min_lon), 6)
            lat = round(min_lat + rng.random() * (max_lat - min_lat), 6)
            if fence.contains(lon, lat):
                return (lat, lon)
        return None

    def _fmt(self, template: str, rng: random.Random, place: str, line: str = "") -> str:
        return template.format(place=place, line=line or _pick(rng, _LINES),
                               tag=_pick(rng, self.tags))

    def _casual(self, rng: random.Random, text: str, mood: str, protect: str = "") -> str:
        """Casual spelling: lowercase, typos, emojis, hashtags (``protect`` must survive)."""
        original = text
        r = rng.random()
        if r < 0.22:
            text = text.lower()
        elif r < 0.25 and mood == "-":
            text = text.upper()
        r = rng.random()
        if r < 0.08 and len(text) > 12:
            i = 1 + int(rng.random() * (len(text) - 3))
            a, b = text[i], text[i + 1]
            if a.isalpha() and b.isalpha():
                text = text[:i] + (b + a if r < 0.05 else a) + text[i + 2:]
            if protect and protect.lower() not in text.lower():
                text = original
        if rng.random() < 0.3:
            text += " " + _pick(rng, _EMOJI[mood])
        if rng.random() < 0.3:
            tag = _pick(rng, self.tags)
            if tag.lower() not in text.lower():
                text += " " + tag
        return text

    def _time_in(self, rng: random.Random, lo: float, delay: float) -> float:
        """``lo + delay`` inside the window (resampled near the end when it falls outside)."""
        t = lo + delay
        if t < self.end_s - 1.0:
            return t
        if lo >= self.end_s - 2.0:
            return min(self.end_s, lo + 1.0)
        return rng.uniform(lo + 1.0, self.end_s - 1.0)

    def _add(self, rec: _Rec) -> _Rec:
        rec.seq = len(self.prepared)
        self.prepared.append(rec)
        return rec

    def _official(self, role: str, platform: str | None = None) -> OfficialAccount | None:
        cands = [a for a in self.officials if a.role.value == role]
        if platform is not None:
            cands = [a for a in cands if a.platform == platform]
        if not cands:
            return None
        twitter = [a for a in cands if a.platform == "twitter"]
        return (twitter or cands)[0]

    def _official_rec(self, t: float, role: str, kind: str, acc: OfficialAccount, lang: str,
                      text: str, mood: str, parent: _Rec | None = None) -> _Rec:
        author = self.official_author[f"{acc.platform}:{acc.handle}"]
        rec = _Rec(t, role, kind, acc.platform, author, lang, text, mood, parent=parent,
                   official=acc)
        rec.lang_out = lang if kind != "repost" or acc.platform == "twitter" else None
        return rec

    def _repost_text(self, platform: str, parent: _Rec) -> str:
        return f"RT @{parent.author[1]}: {parent.text}" if platform == "twitter" else ""

    def _reply_prefix(self, platform: str, parent: _Rec) -> str:
        return "" if platform == "bluesky" else "@" + parent.author[1] + " "

    # -- the scheduled and cascading parts ---------------------------------------------
    def _prepare(self) -> None:
        # Routine official posts come first so questions can reply to them.
        self._prep_routine()
        if "rumour" in self.features:
            self._prep_rumour()
        if "burst" in self.features:
            self._prep_burst()
        if "questions" in self.features:
            self._prep_questions()

    def _prep_routine(self) -> None:
        if not self.officials:
            return
        rng = self._rng("routine")
        count = self._take(max(1, round(self.duration / 8.0)))
        roles = [(role, w) for role, w in _ROUTINE_ROLE_WEIGHTS
                 if any(a.role.value == role for a in self.officials)]
        times = sorted(rng.uniform(0.02, 0.95) * self.end_s for _ in range(count))
        for t in times:
            if roles:
                role = _choose(rng, [r for r, _ in roles], _cum([w for _, w in roles]))
                accounts = [a for a in self.officials if a.role.value == role]
            else:
                role, accounts = "police", self.officials
            acc = accounts[int(rng.random() * len(accounts))]
            texts = _ROUTINE.get(role, _ROUTINE["municipality"])
            lang = "en" if "en" in texts and rng.random() < 0.15 else "nl"
            ai, place = self._place(rng)
            if ai >= 0:
                place = self.areas[ai].name
            text = self._fmt(_pick(rng, texts[lang]), rng, place)
            self._add(self._official_rec(t, "official", "original", acc, lang, text, "0"))

    def _prep_rumour(self) -> None:
        rng = self._rng("rumour")
        size = self._take(min(_CAP_RUMOUR, max(3 if self.n >= 30 else 1,
                                               round(_F_RUMOUR * self.n))))
        if size <= 0:
            return
        claim_name = _pick(rng, list(_CLAIMS))
        claim = _CLAIMS[claim_name]
        ai, place = self._place(rng)
        s = self.scale
        t_root = rng.uniform(0.15, 0.3) * self.end_s
        tau = rng.uniform(180.0, 360.0) * s
        rebut = "rebuttal" in self.features and bool(self.officials)
        t_reb = t_root + rng.uniform(480.0, 1080.0) * s
        if t_reb >= self.end_s - 60.0 * s:
            t_reb = t_root + (self.end_s - t_root) * 0.4
        police_by_platform = {p: self._official("police", p) for p in _PLATFORMS}

        root_lang = "nl" if rng.random() < 0.8 else "en"
        pidx = 0 if rng.random() < 0.7 else 1
        root_text = self._fmt(_pick(rng, claim["root"][root_lang]), rng, place)
        root = self._add(_Rec(t_root, "rumour", "original", _PLATFORMS[pidx],
                              self._citizen(pidx, rng, 800), root_lang, root_text, "-"))
        if rng.random() < 0.3:
            root.geo = self._geo(ai, rng)
        root.lang_out = self._lang_out(rng, root.platform, root_lang, "original")
        self.rumour_info = {"claim": claim_name, "area": self.areas[ai].name if ai >= 0 else None,
                            "text": root_text}
        # Targets: repost/quote candidates (claims and quotes) with preferential weights.
        targets: list[_Rec] = [root] * 4
        reply_targets: list[_Rec] = [root] * 4
        authors_by_platform: dict[str, list[_Author]] = {p: [] for p in _PLATFORMS}
        authors_by_platform[root.platform].append(root.author)
        enquiries: list[_Rec] = []
        rumour_cum = (0.65, 0.93, 0.97, 1.0)
        # A fast wave plus a long tail (people still finding it after the rebuttal).
        delays = sorted(
            self._time_in(rng, t_root, 15.0 * s + (rng.gammavariate(1.6, tau)
                                                   if rng.random() < 0.8
                                                   else rng.gammavariate(1.2, 4.0 * tau)))
            for _ in range(size - 1))
        for t in delays:
            late = rebut and t > t_reb
            r = rng.random()
            w = (0.28, 0.32, 0.48) if late else (0.45, 0.55, 0.68)  # repost | variant | quote
            if r >= w[2]:
                kind = "reply"
            elif r >= w[1]:
                kind = "quote"
            elif r >= w[0]:
                kind = "variant"
            else:
                kind = "repost"
            if kind == "variant":
                vp = self._platform_idx(rng)
                lang = self._lang(rng, rumour_cum)
                vlang = lang if lang in claim["variant"] else "nl"
                text = self._casual(rng, self._fmt(_pick(rng, claim["variant"][vlang]), rng,
                                                   self._place_in(ai, rng)), "-")
                rec = _Rec(t, "rumour", "original", _PLATFORMS[vp],
                           self._citizen(vp, rng), vlang, text, "-")
                if rng.random() < 0.12:
                    rec.geo = self._geo(ai, rng)
                targets.extend([rec] * (1 + (rec.author[2] >= 1000) + (rec.author[2] >= 10_000)))
                reply_targets.append(rec)
            else:
                pool = reply_targets if kind == "reply" else targets
                parent = pool[int(rng.random() * len(pool))]
                if parent.t + 2.0 > t:
                    parent = root
                platform = parent.platform
                pidx = _PLATFORMS.index(platform)
                author = self._citizen(pidx, rng)
                if kind == "repost":
                    rec = _Rec(t, "rumour", "repost", platform, author, parent.lang,
                               self._repost_text(platform, parent), parent.mood, parent=parent)
                    targets.append(parent)
                elif kind == "quote":
                    lang = parent.lang if rng.random() < 0.7 else self._lang(rng, rumour_cum)
                    table = _RUMOUR_QUOTE_LATE if late and rng.random() < 0.6 else _RUMOUR_QUOTE
                    lang = lang if lang in table else "nl"
                    mood, tpl = _pick_t(rng, table[lang])
                    text = self._casual(rng, self._fmt(tpl, rng, self._place_in(ai, rng)), mood)
                    rec = _Rec(t, "rumour", "quote", platform, author, lang, text, mood,
                               parent=parent)
                    targets.extend([rec] * (1 + (author[2] >= 5000)))
                    reply_targets.append(rec)
                else:
                    lang = parent.lang if rng.random() < 0.75 else self._lang(rng, rumour_cum)
                    rs = rng.random()
                    stance_cum = (0.22, 0.30, 0.75) if late else (0.40, 0.68, 0.85)
                    prefix = self._reply_prefix(platform, parent)
                    mood = "0"
                    to_police: OfficialAccount | None = None
                    if rs < stance_cum[0]:  # enquiry, sometimes tagging the police
                        police = police_by_platform[platform]
                        if police is not None and rng.random() < 0.35:
                            plang = lang if lang in claim["police"] else "nl"
                            lang = plang
                            body = (_mention(police.handle) + " "
                                    + self._fmt(_pick(rng, claim["police"][plang]), rng,
                                                self._place_in(ai, rng)))
                            to_police = police
                        else:
                            lang = lang if lang in _ENQUIRY else "nl"
                            body = _pick(rng, _ENQUIRY[lang])
                    elif rs < stance_cum[1]:  # support
                        lang = lang if lang in claim["support"] else "nl"
                        body = self._fmt(_pick(rng, claim["support"][lang]), rng,
                                         self._place_in(ai, rng))
                        mood = "-"
                    elif rs < stance_cum[2]:  # deny
                        table2 = _DENY_LATE if late and rng.random() < 0.5 else _DENY
                        lang = lang if lang in table2 else "nl"
                        body = self._fmt(_pick(rng, table2[lang]), rng, self._place_in(ai, rng))
                    else:  # comment
                        lang = lang if lang in _COMMENT else "nl"
                        body = _pick(rng, _COMMENT[lang])
                        mood = "-"
                    text = prefix + (body if to_police else self._casual(rng, body, mood))
                    rec = _Rec(t, "rumour", "reply", platform, author, lang, text, mood,
                               parent=parent)
                    if to_police is not None:
                        rec.to_account = to_police
                        enquiries.append(rec)
                    if rng.random() < 0.3:
                        reply_targets.append(rec)
            rec.lang_out = self._lang_out(rng, rec.platform, rec.lang, rec.kind)
            authors_by_platform[rec.platform].append(rec.author)
            self._add(rec)
        if rebut:
            self._prep_rebuttal(rng, claim, ai, t_reb, tau, size, authors_by_platform, enquiries)

    def _prep_rebuttal(self, rng: random.Random, claim: dict[str, dict[str, tuple[str, ...]]],
                       ai: int, t_reb: float, tau: float, rumour_size: int,
                       rumour_authors: dict[str, list[_Author]], enquiries: list[_Rec]) -> None:
        s = self.scale
        police = self._official("police")
        if police is None:
            police = (self._official("safety_region") or self._official("municipality")
                      or self.officials[0])
        # officials write the area's proper name
        place = self.areas[ai].name if ai >= 0 else self._place_in(ai, rng)
        if not self._take(1):
            return
        r1 = self._add(self._official_rec(
            t_reb, "rebuttal", "original", police, "nl",
            self._fmt(claim["rebuttal"]["nl"][0], rng, place), "0"))
        r1.rebuts = []
        heads: list[_Rec] = [r1] * 6
        for other in self.officials:  # cross-post on the police's other platforms
            if other.role == police.role and other.platform != police.platform and self._take(1):
                rec = self._add(self._official_rec(
                    self._time_in(rng, t_reb, rng.uniform(30.0, 240.0) * s), "rebuttal",
                    "original", other, "nl", r1.text, "0"))
                rec.rebuts = []
                heads.extend([rec] * 3)
        if rng.random() < 0.7 and self._take(1):
            rec = self._add(self._official_rec(
                self._time_in(rng, t_reb, rng.uniform(120.0, 600.0) * s), "rebuttal", "original",
                police, "en", self._fmt(claim["rebuttal"]["en"][0], rng, place), "0"))
            rec.rebuts = []
            heads.extend([rec] * 3)
        for other in self.officials:  # partner agencies repost it
            if (other.platform == police.platform and other.role in (Role.MUNICIPALITY,
                                                                        Role.SAFETY_REGION)
                    and rng.random() < 0.8 and self._take(1)):
                self._add(self._official_rec(
                    self._time_in(rng, t_reb, rng.uniform(60.0, 400.0) * s), "rebuttal",
                    "repost", other, "nl", self._repost_text(other.platform, r1), "0", parent=r1))
        # Police answers to enquiries that tagged them (only once they know).
        for q in enquiries:
            if q.to_account is None or rng.random() >= 0.45:
                continue
            t_a = max(q.t, t_reb + 60.0 * s) + 30.0 * s + rng.expovariate(1.0 / (240.0 * s))
            if t_a >= self.end_s - 1.0 or not self._take(1):
                continue
            lang = q.lang if q.lang in claim["answer"] else "nl"
            text = self._reply_prefix(q.platform, q) + _pick(rng, claim["answer"][lang])
            rec = self._add(self._official_rec(t_a, "answer", "reply", q.to_account, lang, text,
                                               "0", parent=q))
            rec.rebuts = [q]
        # Citizens spread the rebuttal: the race with the rumour goes either way.
        size = self._take(round(rumour_size * rng.uniform(0.5, 1.3)))
        tau_b = tau * rng.uniform(0.9, 1.6)
        times = sorted(self._time_in(rng, t_reb, 10.0 * s + rng.gammavariate(1.8, tau_b))
                       for _ in range(size))
        engaged: list[_Rec] = []
        for t in times:
            pool = heads if not engaged or rng.random() < 0.8 else engaged
            parent = pool[int(rng.random() * len(pool))]
            if parent.t + 2.0 > t:
                parent = r1
            platform = parent.platform
            pidx = _PLATFORMS.index(platform)
            prior = rumour_authors[platform]
            author = (prior[int(rng.random() * len(prior))] if prior and rng.random() < 0.25
                      else self._citizen(pidx, rng))
            r = rng.random()
            if r < 0.55:
                rec = _Rec(t, "rebuttal", "repost", platform, author, parent.lang,
                           self._repost_text(platform, parent), parent.mood, parent=parent)
            elif r < 0.7:
                lang = parent.lang if parent.lang in _REBUTTAL_QUOTE else "nl"
                mood, tpl = _pick_t(rng, _REBUTTAL_QUOTE[lang])
                rec = _Rec(t, "rebuttal", "quote", platform, author, lang,
                           self._casual(rng, tpl, mood), mood, parent=parent)
                engaged.append(rec)
            else:
                lang = parent.lang if rng.random() < 0.8 else self._lang(rng)
                mood, tpl = _pick_t(rng, _REBUTTAL_REPLY[lang])
                rec = _Rec(t, "rebuttal", "reply", platform, author, lang,
                           self._reply_prefix(platform, parent) + self._casual(rng, tpl, mood),
                           mood, parent=parent)
                if parent.official is not None and "?" in tpl:  # a question to the police
                    rec.to_account = parent.official
            rec.lang_out = self._lang_out(rng, platform, rec.lang, rec.kind)
            self._add(rec)

    def _prep_burst(self) -> None:
        if not self.areas:
            return
        rng = self._rng("burst")
        size = self._take(min(_CAP_BURST, max(5 if self.n >= 100 else 1,
                                              round(_F_BURST * self.n))))
        if size <= 0:
            return
        s = self.scale
        ai = int(rng.random() * len(self.areas))
        t_s = rng.uniform(0.5, 0.75) * self.end_s
        dur = min(rng.uniform(180.0, 420.0) * s, max(1.0, self.end_s - t_s - 1.0))
        self.burst_window = (t_s, t_s + dur)
        self.burst_info = {"area": self.areas[ai].name}
        burst_cum = (0.65, 0.93, 0.97, 1.0)
        originals: list[_Rec] = []
        for t in sorted(t_s + dur * rng.betavariate(2.0, 2.5) for _ in range(size)):
            pidx = self._platform_idx(rng)
            lang = self._lang(rng, burst_cum)
            parent = originals[int(rng.random() * len(originals))] if originals else None
            if parent is not None and rng.random() < 0.18 and parent.t + 2.0 <= t:
                place = _pick(rng, self.places[ai])
                platform = parent.platform
                pidx = _PLATFORMS.index(platform)
                body = self._fmt(_pick(rng, _BURST_REPLY[lang]), rng, place)
                rec = _Rec(t, "burst", "reply", platform, self._citizen(pidx, rng), lang,
                           self._reply_prefix(platform, parent)
                           + self._casual(rng, body, "-", protect=place), "-", parent=parent)
            else:
                geo = self._geo(ai, rng) if rng.random() < 0.45 else None
                if geo is not None and rng.random() < 0.35:
                    text = self._casual(rng, _pick(rng, _BURST_GEO[lang]), "-")
                else:
                    place = _display(_pick(rng, self.places[ai]), rng)
                    text = self._casual(rng, self._fmt(_pick(rng, _BURST_PLACE[lang]), rng,
                                                       place), "-", protect=place)
                rec = _Rec(t, "burst", "original", _PLATFORMS[pidx], self._citizen(pidx, rng),
                           lang, text, "-", geo=geo)
                originals.append(rec)
            rec.lang_out = self._lang_out(rng, rec.platform, lang, rec.kind)
            self._add(rec)
        # The authorities react a few minutes in; people spread the advisory.
        acc = (self._official("safety_region") or self._official("police")
               or self._official("municipality"))
        t_adv = t_s + rng.uniform(240.0, 600.0) * s
        if acc is None or t_adv >= self.end_s - 1.0 or not self._take(1):
            return
        lang = "nl" if acc.platform != "twitter" or rng.random() < 0.8 else "en"
        adv = self._add(self._official_rec(
            t_adv, "advisory", "original", acc, lang,
            _ADVISORY[lang].format(place=self.areas[ai].name), "-"))
        echo = self._take(round(size * _F_ADVISORY_ECHO))
        for t in sorted(self._time_in(rng, t_adv, 5.0 + rng.gammavariate(1.5, 120.0 * s))
                        for _ in range(echo)):
            pidx = _PLATFORMS.index(adv.platform)
            author = self._citizen(pidx, rng)
            if rng.random() < 0.7:
                rec = _Rec(t, "echo", "repost", adv.platform, author, lang,
                           self._repost_text(adv.platform, adv), "-", parent=adv)
            else:
                elang = lang if lang in _ADVISORY_ECHO else "nl"
                mood, tpl = _pick_t(rng, _ADVISORY_ECHO[elang])
                rec = _Rec(t, "echo", "reply", adv.platform, author, elang,
                           self._reply_prefix(adv.platform, adv) + self._casual(rng, tpl, mood),
                           mood, parent=adv)
            rec.lang_out = self._lang_out(rng, rec.platform, rec.lang, rec.kind)
            self._add(rec)

    def _prep_questions(self) -> None:
        if not self.officials:
            return
        rng = self._rng("questions")
        count = self._take(min(_CAP_QUESTIONS, max(2 if self.n >= 100 else 0,
                                                   round(_F_QUESTIONS * self.n))))
        roles = [(role, w) for role, w in _QUESTION_ROLE_WEIGHTS
                 if any(a.role.value == role for a in self.officials)]
        if not roles:
            return
        names = [r for r, _ in roles]
        cum = _cum([w for _, w in roles])
        routine = [r for r in self.prepared if r.role == "official" and r.kind == "original"]
        s = self.scale
        for t in sorted(rng.uniform(0.03, 0.97) * self.end_s for _ in range(count)):
            role = _choose(rng, names, cum)
            accounts = [a for a in self.officials if a.role.value == role]
            acc = accounts[int(rng.random() * len(accounts))]
            pidx = _PLATFORMS.index(acc.platform) if acc.platform in _PLATFORMS else 0
            lang = "nl" if rng.random() < 0.7 else "en"
            _, place = self._place(rng)
            line = _pick(rng, _LINES)
            body = self._fmt(_pick(rng, _QUESTIONS[role][lang]), rng, place, line)
            earlier = [r for r in routine if r.official == acc and r.t + 2.0 <= t]
            parent = earlier[-1] if earlier and rng.random() < 0.35 else None
            if parent is not None and acc.platform == "bluesky":
                text = body
            else:
                text = _mention(acc.handle) + " " + body
            if rng.random() < 0.15:
                text += " " + _pick(rng, self.tags)
            rec = _Rec(t, "question", "reply" if parent else "original", acc.platform,
                       self._citizen(pidx, rng), lang, text, "0", parent=parent)
            rec.to_account = acc
            rec.lang_out = self._lang_out(rng, rec.platform, lang, rec.kind)
            self._add(rec)
            if rng.random() < 0.45:
                t_a = t + rng.uniform(60.0, 1200.0) * s
                if t_a < self.end_s - 1.0 and self._take(1):
                    answers = _ANSWERS[role]
                    alang = lang if lang in answers else "nl"
                    text = self._reply_prefix(acc.platform, rec) + self._fmt(
                        _pick(rng, answers[alang]), rng, place, line)
                    self._add(self._official_rec(t_a, "answer", "reply", acc, alang, text, "0",
                                                 parent=rec))

    # -- background arrivals --------------------------------------------------------------
    def _bins(self, rng: random.Random) -> None:
        """Per-minute rate: time-of-day curve x slow log-normal drift x episodes."""
        nb = max(1, math.ceil(self.duration))
        width = self.end_s / nb
        tz = ZoneInfo(self.event.timezone)
        weights: list[float] = []
        z = 0.0
        for j in range(nb):
            mid = self.t0 + (j + 0.5) * width
            local = datetime.fromtimestamp(mid, tz)
            h = local.hour + local.minute / 60.0
            h0 = int(h) % 24
            f = h - int(h)
            w = _DIURNAL[h0] * (1.0 - f) + _DIURNAL[(h0 + 1) % 24] * f
            z = 0.85 * z + 0.12 * rng.gauss(0.0, 1.0)
            w *= math.exp(z)
            t = (j + 0.5) * width
            if self.episode and self.episode[0] <= t < self.episode[1]:
                w *= 1.2
            weights.append(w)
        total = sum(weights)
        acc = 0.0
        cum = [0.0]
        for w in weights:
            acc += w / total
            cum.append(acc)
        cum[-1] = 1.0
        self.bin_cum = cum
        self.bin_width = width

    def _bg_times(self, rng: random.Random) -> Iterator[float]:
        """n sorted arrival times of the inhomogeneous Poisson process, made in order."""
        cum = self.bin_cum
        width = self.bin_width
        last = len(cum) - 2
        j = 0
        x = 0.0
        for m in range(self.n_background, 0, -1):
            x = 1.0 - (1.0 - x) * (1.0 - rng.random()) ** (1.0 / m)
            while j < last and cum[j + 1] <= x:
                j += 1
            lo = cum[j]
            span = cum[j + 1] - lo
            yield (j + ((x - lo) / span if span > 0 else 0.5)) * width

    # -- emission -------------------------------------------------------------------------
    def _iso(self, ts: float) -> str:
        sec = int(ts)
        if sec != self._last_sec:
            self._last_sec = sec
            self._last_iso = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._last_iso

    def _new_id(self, platform: str, ts: float) -> str:
        k = self.k
        self.k = k + 1
        ms = int(ts * 1000.0)
        if platform == "twitter":
            return str(((ms - _TWITTER_EPOCH_MS) << 22) | (k & 0x3FFFFF))
        if platform == "bluesky":
            return _b32((((ms * 1000 + k % 1000) << 10) | ((k // 1000) & 1023)), 13)
        return str((ms << 16) | (k & 0xFFFF))

    def _count(self, platform: str, lang: str, lang_out: str | None, kind: str, mood: str,
               parent_id: str | None, geo: bool) -> None:
        key = lang_out or "missing"
        self.by_lang[key] = self.by_lang.get(key, 0) + 1
        self.by_true_lang[lang] = self.by_true_lang.get(lang, 0) + 1
        self.by_platform[platform] = self.by_platform.get(platform, 0) + 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.by_mood[mood] = self.by_mood.get(mood, 0) + 1
        if geo:
            self.geotagged += 1
        if parent_id is not None:
            entry = self.official_posts.get(parent_id)
            if entry is not None:
                field = "reposts" if kind == "repost" else ("replies" if kind == "reply"
                                                            else "quotes")
                entry[field] += 1

    def _emit_rec(self, rec: _Rec) -> dict[str, Any]:
        ts = self.t0 + rec.t
        pid = self._new_id(rec.platform, ts)
        rec.id = pid
        post: dict[str, Any] = {"id": pid, "text": rec.text, "platform": rec.platform,
                                "created_at": self._iso(ts)}
        if rec.lang_out:
            post["lang"] = rec.lang_out
        a = rec.author
        post["author"] = {"id": a[0], "handle": a[1], "followers": a[2], "verified": a[3]}
        parent_id = rec.parent.id if rec.parent is not None else None
        if parent_id is not None:
            post[{"reply": "reply_to", "repost": "repost_of", "quote": "quote_of"}[rec.kind]] = (
                parent_id)
        if rec.geo is not None:
            post["geo"] = {"lat": rec.geo[0], "lon": rec.geo[1]}
        post["synthetic"] = True
        self._count(rec.platform, rec.lang, rec.lang_out, rec.kind, rec.mood, parent_id,
                    rec.geo is not None)
        if rec.official is not None:
            self.official_posts[pid] = {
                "id": pid, "account": rec.official.handle, "platform": rec.official.platform,
                "role": rec.official.role.value, "kind": rec.kind, "purpose": rec.role,
                "reposts": 0, "replies": 0, "quotes": 0,
            }
            if rec.role == "official" and rec.kind == "original":
                self.recent_official.append((rec.t, self._as_parent(rec, official=True)))
        role = rec.role
        if role == "rumour":
            self.rumour_posts.append(pid)
            if rec.parent is None:
                self.rumour_roots.append(pid)
        elif role == "rebuttal":
            self.rebuttal_posts.append(pid)
        elif role == "burst":
            self.burst_ids.append(pid)
            if rec.geo is not None:
                self.burst_geo += 1
            if not self.burst_first:
                self.burst_first = post["created_at"]
            self.burst_last = post["created_at"]
        elif role == "advisory":
            self.advisory_id = pid
        if rec.rebuts is not None:
            entry: dict[str, Any] = {"official_post": pid, "account": rec.official.handle
                                     if rec.official else None,
                                     "kind": "broadcast" if not rec.rebuts else "reply",
                                     "rumour_posts": [r.id for r in rec.rebuts]}
            self.rebuttals.append((entry, rec))
        if rec.to_account is not None:
            rec.entry = {"id": pid, "to_account": rec.to_account.handle,
                         "platform": rec.to_account.platform, "answered_by": None}
            self.questions.append(rec.entry)
        if role == "answer" and rec.parent is not None and rec.parent.entry is not None \
                and rec.parent.entry["answered_by"] is None:
            rec.parent.entry["answered_by"] = pid
        return post

    @staticmethod
    def _as_parent(rec: _Rec, official: bool = False) -> _Parent:
        return (rec.id, rec.platform, rec.author[1], rec.text, rec.lang, rec.mood, official)

    def run(self) -> Iterator[dict[str, Any]]:
        rng = self._rng("background")
        prepared = self.prepared
        n_pre = len(prepared)
        pi = 0
        rate_cap = max(50, min(20_000, int(self.n_background / self.duration * 10.0)))
        self.recent = [None] * rate_cap
        cat_names = [c for c, _ in _BG_CATEGORIES]
        cat_w = [w for _, w in _BG_CATEGORIES]
        cum_normal = _cum(cat_w)
        ep_w = list(cat_w)
        ep_w[cat_names.index("transport")] *= 5.0
        cum_episode = _cum(ep_w)
        burst_w = list(cat_w)
        burst_w[cat_names.index("crowd")] *= 2.0
        cum_burst = _cum(burst_w)
        episode = self.episode or (-1.0, -1.0)
        bw = self.burst_window
        near_burst = (bw[0], bw[1] + 600.0 * self.scale) if bw else (-1.0, -1.0)
        for t in self._bg_times(rng):
            while pi < n_pre and prepared[pi].t <= t:
                yield self._emit_rec(prepared[pi])
                pi += 1
            if episode[0] <= t < episode[1]:
                cum = cum_episode
            elif near_burst[0] <= t < near_burst[1]:
                cum = cum_burst
            else:
                cum = cum_normal
            yield self._emit_bg(rng, t, cat_names, cum)
        while pi < n_pre:
            yield self._emit_rec(prepared[pi])
            pi += 1
        self.prepared = []
        self.finished = True

    def _pick_parent(self, rng: random.Random, t: float) -> _Parent | None:
        r = rng.random()
        if r < 0.06 and self.recent_official:
            while self.recent_official and self.recent_official[0][0] < t - 2700.0:
                self.recent_official.pop(0)
            if self.recent_official:
                ro = self.recent_official
                return ro[int(rng.random() * len(ro))][1]
        if r < 0.5 and self.popular_n:
            n = min(self.popular_n, len(self.popular))
            return self.popular[int(rng.random() * n)]
        if self.recent_n:
            n = min(self.recent_n, len(self.recent))
            return self.recent[int(rng.random() * n)]
        return None

    def _emit_bg(self, rng: random.Random, t: float, cat_names: list[str],
                 cum: list[float]) -> dict[str, Any]:
        r = rng.random()
        kind = "original" if r < 0.62 else ("repost" if r < 0.87 else
                                            ("reply" if r < 0.96 else "quote"))
        parent = self._pick_parent(rng, t) if kind != "original" else None
        if parent is None:
            kind = "original"
        geo: tuple[float, float] | None = None
        if parent is None:
            pidx = self._platform_idx(rng)
            platform = _PLATFORMS[pidx]
            lang = _choose(rng, _LANGS, _LANG_CUM)
            cat = _choose(rng, cat_names, cum)
            if cat == "weather":
                cat = self.weather
            table = _BG[cat]
            if lang not in table:
                table = _BG["vibe"] if lang in _BG["vibe"] else _BG["crowd"]
            mood, tpl = _pick_t(rng, table[lang])
            ai, place = self._place(rng)
            text = self._casual(rng, self._fmt(tpl, rng, place), mood)
            if rng.random() < 0.2 and self.areas:
                if "{place}" not in tpl:
                    ai = int(rng.random() * len(self.areas))
                geo = self._geo(ai, rng)
        else:
            platform = parent[1]
            pidx = _PLATFORMS.index(platform)
            if kind == "repost":
                lang, mood = parent[4], parent[5]
                text = f"RT @{parent[2]}: {parent[3]}" if platform == "twitter" else ""
            else:
                lang = parent[4] if rng.random() < 0.85 else _choose(rng, _LANGS, _LANG_CUM)
                if parent[6]:
                    lang = lang if lang in _OFFICIAL_FEEDBACK else "nl"
                    mood, tpl = _pick_t(rng, _OFFICIAL_FEEDBACK[lang])
                elif kind == "reply":
                    mood, tpl = _pick_t(rng, _BG_REPLY[lang])
                else:
                    mood, tpl = _pick_t(rng, _BG_QUOTE[lang])
                text = self._casual(rng, tpl, mood)
                if kind == "reply" and platform != "bluesky":
                    text = "@" + parent[2] + " " + text
        author = self._author(pidx, int(self.pool_sizes[pidx] * rng.random() ** 1.6))
        ts = self.t0 + t
        pid = self._new_id(platform, ts)
        post: dict[str, Any] = {"id": pid, "text": text, "platform": platform,
                                "created_at": self._iso(ts)}
        lang_out = self._lang_out(rng, platform, lang, kind)
        if lang_out:
            post["lang"] = lang_out
        post["author"] = {"id": author[0], "handle": author[1], "followers": author[2],
                          "verified": author[3]}
        parent_id = None
        if parent is not None:
            parent_id = parent[0]
            post["reply_to" if kind == "reply" else ("repost_of" if kind == "repost"
                                                      else "quote_of")] = parent_id
        if geo is not None:
            post["geo"] = {"lat": geo[0], "lon": geo[1]}
        post["synthetic"] = True
        self._count(platform, lang, lang_out, kind, mood, parent_id, geo is not None)
        if kind != "repost":
            item: _Parent = (pid, platform, author[1], text, lang, mood, False)
            self.recent[self.recent_n % len(self.recent)] = item
            self.recent_n += 1
            if author[2] >= 2000:
                self.popular[self.popular_n % len(self.popular)] = item
                self.popular_n += 1
        return post

    # -- truth ----------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        rebuttals = []
        for entry, rec in self.rebuttals:
            out = dict(entry)
            if not rec.rebuts:
                out["rumour_posts"] = list(self.rumour_posts)
            rebuttals.append(out)
        burst: dict[str, Any] | None = None
        if self.burst_info is not None and self.burst_ids:
            burst = {
                "area": self.burst_info["area"],
                "start": self.burst_first,
                "end": self.burst_last,
                "post_ids": list(self.burst_ids),
                "geotagged": self.burst_geo,
                "official_response": self.advisory_id,
            }
        return {
            "generator": GENERATOR,
            "scenario": self.scenario,
            "seed": self.seed,
            "n_posts": self.k,
            "event": self.event.name,
            "start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (self.start + timedelta(seconds=self.end_s)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_minutes": self.duration,
            "official_posts": list(self.official_posts.values()),
            "rumour": dict(self.rumour_info) if self.rumour_info and self.rumour_posts else None,
            "rumour_posts": list(self.rumour_posts),
            "rumour_roots": list(self.rumour_roots),
            "rebuttals": rebuttals,
            "rebuttal_posts": list(self.rebuttal_posts),
            "questions": list(self.questions),
            "safety_burst": burst,
            "counts": {
                "by_lang": dict(sorted(self.by_lang.items())),
                "by_true_lang": dict(sorted(self.by_true_lang.items())),
                "by_platform": dict(sorted(self.by_platform.items())),
                "by_kind": dict(sorted(self.by_kind.items())),
                "by_mood": {
                    {"+": "positive", "0": "neutral", "-": "negative"}[k]: v
                    for k, v in sorted(self.by_mood.items())
                },
                "geotagged": self.geotagged,
            },
        }
