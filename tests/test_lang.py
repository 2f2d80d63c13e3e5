"""Tests of language detection (models/lang.py)."""

from __future__ import annotations

import pytest

from models.lang import PARALLEL_FROM, UNDETERMINED, HybridDetector, normalise_hint

DUTCH = [
    "Wat een gezellige drukte op de Dam vandaag, iedereen in het oranje!",
    "Het is echt veel te druk bij Centraal Station, je kunt er bijna niet meer lopen",
    "Vrijmarkt in het Vondelpark is weer geweldig, al mijn oude spullen verkocht",
    "Pas op, de tram naar Leidseplein rijdt vandaag niet door de afsluitingen",
    "Waarom staat iedereen zo te duwen bij de brug? Dit voelt niet veilig meer",
    "Prachtig weer voor Koningsdag, de zon schijnt en de muziek is top",
    "Ik ben mijn vrienden kwijt in de menigte, iemand een idee waar het podium is?",
    "De metro zit helemaal vol, we wachten maar op de volgende",
    "Heeft iemand gezien wat er net gebeurde bij het Rembrandtplein? Veel politie daar",
    "Er lopen overal mensen met bier, de straten liggen vol met afval",
    "Gratis water halen bij de EHBO post naast het museum, echt fijn geregeld",
    "Wij gaan zo naar huis, het begint te regenen en het is koud geworden",
    "Volgens mij is er iemand onwel geworden vlakbij de grachten, ambulance is onderweg",
    "Niet doen: met de auto naar de binnenstad, alles staat vast",
    "De sfeer is fantastisch, overal muziek en dansende mensen",
    "Kan iemand mij vertellen of de treinen vanavond nog normaal rijden?",
    "Mijn telefoon is bijna leeg en ik kan mijn vriendin nergens vinden",
    "De politie heeft de straat afgesloten, we moeten omlopen via de Jordaan",
    "Wat een rij voor de wc, een half uur wachten is echt belachelijk",
    "Die oranje taart van de bakker op de hoek was heerlijk",
    "Het wordt steeds voller op het plein, ik ga maar een rustiger plekje zoeken",
    "Hopelijk blijft het droog tot vanavond, anders wordt het een modderfeest",
    "Kinderen hebben de hele ochtend limonade verkocht op de vrijmarkt",
    "Ik heb nog nooit zo veel mensen bij elkaar gezien in de stad",
    "Let op je spullen, er zijn zakkenrollers actief bij het station",
    "De boten op de gracht varen bijna tegen elkaar aan, wat een chaos",
    "Morgen moet ik gewoon weer werken, maar vandaag is het feest",
    "Bij de ingang van het park wordt gecontroleerd op glas en flessen",
    "Wij zitten op een terras en kijken naar alle mensen die voorbij lopen",
    "Ze zeggen dat er een vechtpartij was, maar ik heb er zelf niets van gemerkt",
]
ENGLISH = [
    "What an amazing atmosphere in Amsterdam today, everyone is wearing orange!",
    "It is way too crowded near Central Station, you can barely move",
    "The flea market in Vondelpark is great, I sold all my old stuff",
    "Heads up, the tram to Leidseplein is not running because of the closures",
    "Why is everyone pushing near the bridge? This does not feel safe anymore",
    "Beautiful weather for King's Day, the sun is out and the music is great",
    "I lost my friends in the crowd, does anyone know where the main stage is?",
    "The metro is completely packed, we will wait for the next one",
    "Did anyone see what just happened at Rembrandtplein? Lots of police there",
    "People are walking around with beer everywhere and the streets are full of trash",
    "You can get free water at the first aid post next to the museum, really well organised",
    "We are heading home soon, it started raining and it got cold",
    "I think someone fainted near the canals, an ambulance is on its way",
    "Do not drive into the city centre today, everything is stuck in traffic",
    "The vibe is fantastic, music and dancing people everywhere",
    "Can someone tell me whether the trains are still running normally tonight?",
    "My phone battery is almost dead and I cannot find my girlfriend anywhere",
    "The police closed the street, we have to walk around through the Jordaan",
    "The queue for the toilets is ridiculous, half an hour of waiting",
    "That orange cake from the bakery on the corner was delicious",
    "The square keeps getting fuller, I am going to look for a quieter spot",
    "Hopefully it stays dry until tonight, otherwise it will be a mud party",
    "The kids sold lemonade at the market all morning long",
    "I have never seen so many people together in one city",
    "Watch your belongings, there are pickpockets active around the station",
    "The boats on the canal almost crash into each other, what a mess",
    "I have to go back to work tomorrow, but today we celebrate",
    "Security at the park entrance is checking everyone for glass bottles",
    "We are sitting on a terrace watching all the people walk by",
    "They say there was a fight, but I did not notice anything myself",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Het is ontzettend druk op de Dam, je kunt bijna niet meer lopen", "nl"),
        ("It is incredibly crowded on Dam Square, you can barely walk", "en"),
        ("Es ist heute sehr voll am Bahnhof und die Züge fahren nicht mehr pünktlich", "de"),
        ("Il y a beaucoup trop de monde sur la place, je ne peux plus avancer du tout", "fr"),
        ("Hay demasiada gente en la plaza, no se puede caminar", "es"),
        ("Heel druk op de Dam", "nl"),  # short: lingua, not CLD2
        ("Way too crowded here", "en"),
    ],
)
def test_obvious_languages(detector: HybridDetector, text: str, expected: str) -> None:
    assert detector.detect_batch([text], [None]) == [expected]


def test_detection_beats_the_platform_hint(detector: HybridDetector) -> None:
    text = "Het is ontzettend druk op de Dam, je kunt bijna niet meer lopen"
    assert detector.detect_batch([text], ["en"]) == ["nl"]


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("ok!", None, UNDETERMINED),
        ("lol 😂😂", None, UNDETERMINED),
        ("Dam!!", "nl", "nl"),
        ("", None, UNDETERMINED),
        ("", "en", "en"),
        ("🎉🎉🎉", "nl-NL", "nl"),
        ("ja", "en_US", "en"),
        ("1234 5678 !!!", "EN", "en"),
        ("kk", "und", UNDETERMINED),
        ("kk", "zz-top-xx", "zz"),
    ],
)
def test_short_text_keeps_the_hint_or_is_undetermined(
    detector: HybridDetector, text: str, hint: str | None, expected: str
) -> None:
    assert detector.detect_batch([text], [hint]) == [expected]


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("nl", "nl"), ("NL", "nl"), ("nl-NL", "nl"), ("en_US", "en"), (" en-gb ", "en"),
        ("zh-Hant-TW", "zh"), ("nld", UNDETERMINED), ("eng", UNDETERMINED),
        ("und", UNDETERMINED), ("", UNDETERMINED), ("-", UNDETERMINED), ("1a", UNDETERMINED),
        ("e", UNDETERMINED),
    ],
)
def test_normalise_hint(hint: str, expected: str) -> None:
    assert normalise_hint(hint) == expected


def test_urls_and_mentions_do_not_drive_detection(detector: HybridDetector) -> None:
    english_noise = ("@the_quick_brown_fox_jumps_over @the_lazy_dog_and_friends "
                     "https://example.com/the-quick-brown-fox-jumps-over-the-lazy-dog-again "
                     "www.thisisanenglishwebsite.com/about-the-weather-today")
    # only URLs and mentions: nothing to judge, so the hint (or und)
    assert detector.detect_batch([english_noise], [None]) == [UNDETERMINED]
    assert detector.detect_batch([english_noise], ["nl"]) == ["nl"]
    # a Dutch sentence wrapped in English-looking URLs, mentions and a retweet prefix
    dutch = ("RT @the_quick_brown_fox: " + english_noise
             + " Het is echt ontzettend druk op de Dam, ga er niet heen")
    assert detector.detect_batch([dutch], [None]) == ["nl"]


def test_hashtag_words_count_as_text(detector: HybridDetector) -> None:
    assert detector.detect_batch(["#Koningsdag #drukte #gezellig #oranje #vrijmarkt"],
                                 [None]) == ["nl"]


def test_dutch_vs_english_accuracy(detector: HybridDetector) -> None:
    texts = DUTCH + ENGLISH
    truth = ["nl"] * len(DUTCH) + ["en"] * len(ENGLISH)
    got = detector.detect_batch(texts, [None] * len(texts))
    wrong = [(t, g) for t, g, want in zip(texts, got, truth, strict=True) if g != want]
    accuracy = 1 - len(wrong) / len(texts)
    assert accuracy >= 0.90, f"accuracy {accuracy:.1%}, wrong: {wrong}"


def test_short_dutch_vs_english_accuracy(detector: HybridDetector) -> None:
    # the first few words only: these go through lingua (below CLD2's 40 characters)
    dutch = [" ".join(t.split()[:5]) for t in DUTCH]
    english = [" ".join(t.split()[:5]) for t in ENGLISH]
    got = detector.detect_batch(dutch + english, [None] * 60)
    right = sum(g == "nl" for g in got[:30]) + sum(g == "en" for g in got[30:])
    assert right / 60 >= 0.85, list(zip(dutch + english, got, strict=True))


def test_batch_and_single_detection_agree(detector: HybridDetector) -> None:
    # a batch of >= PARALLEL_FROM lingua texts goes through lingua's parallel path
    texts = [" ".join(t.split()[:4]) for t in DUTCH + ENGLISH]
    assert len(texts) >= PARALLEL_FROM
    batch = detector.detect_batch(texts, [None] * len(texts))
    assert batch == [detector.detect_batch([t], [None])[0] for t in texts]


def test_empty_batch(detector: HybridDetector) -> None:
    assert detector.detect_batch([], []) == []


def test_configured_languages() -> None:
    small = HybridDetector(["DE"])
    assert small.languages == ("de", "en", "nl")  # nl and en are always in
    text = "Il y a beaucoup trop de monde sur la place, je ne peux plus avancer du tout"
    assert small.detect_batch([text], [None])[0] in {"de", "en", "nl", UNDETERMINED}
    with pytest.raises(ValueError, match="'xx' is not supported"):
        HybridDetector(["xx"])
