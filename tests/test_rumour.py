"""Rumour scoring: claim classifier, cluster score, lifecycle, evaluation helpers."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.embed import CachedEmbedder, HashingEmbedder
from models.rumour import (
    DEFAULT_WEIGHTS,
    DENSE_NAMES,
    ClaimClassifier,
    ClusterFeatures,
    RumourScorer,
    RumourSettings,
    SimilarityClusterer,
    SingletonClusterer,
    claim_features,
    detection_latency,
    embedder_identity,
    evaluate_rumours,
    hashed_ngrams,
    load_default_claim_classifier,
    score_drivers,
    why,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def feats(**kw: object) -> ClusterFeatures:
    base: dict[str, object] = dict(
        size=1, roots=1, replies=0, reposts=0, quotes=0, support=0, deny=0, query=0,
        comment=0, distinct_authors=1, verified_posts=0, official_posts=0, reach=100,
        age_s=0.0, velocity=0.2, prev_velocity=0.0, peak_velocity=0.2, idle_s=0.0,
        claim_prob=0.5)
    base.update(kw)
    return ClusterFeatures(**base)  # type: ignore[arg-type]


scorer = RumourScorer(RumourSettings())

counts = st.integers(min_value=0, max_value=10_000)
floats = st.floats(min_value=0, max_value=1e6, allow_nan=False)
features_st = st.builds(
    ClusterFeatures, size=counts, roots=counts, replies=counts, reposts=counts, quotes=counts,
    support=counts, deny=counts, query=counts, comment=counts, distinct_authors=counts,
    verified_posts=counts, official_posts=counts, reach=st.integers(0, 10**12), age_s=floats,
    velocity=floats, prev_velocity=floats, peak_velocity=floats, idle_s=floats,
    claim_prob=st.floats(min_value=0, max_value=1), resolved=st.booleans())


@given(features_st)
@settings(max_examples=300, deadline=None)
def test_score_in_unit_interval_and_lifecycle_known(f: ClusterFeatures) -> None:
    s = scorer.score(f)
    assert 0.0 <= s <= 1.0
    assert scorer.lifecycle(f) in {"emerging", "growing", "peaking", "fading", "resolved"}
    assert s == pytest.approx(1.0 / (1.0 + math.exp(-sum(scorer.explain(f).values()))))


def test_nan_and_odd_values_do_not_break_the_score() -> None:
    for f in (feats(claim_prob=float("nan")), feats(velocity=float("inf")),
              feats(size=0, roots=0), feats(velocity=-3.0, reach=-5)):
        assert 0.0 <= scorer.score(f) <= 1.0


@given(features_st, floats, floats)
@settings(max_examples=200, deadline=None)
def test_monotone_in_velocity(f: ClusterFeatures, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert scorer.score(replace(f, velocity=lo)) <= scorer.score(replace(f, velocity=hi)) + 1e-12


@given(features_st, st.integers(0, 500), st.integers(0, 500))
@settings(max_examples=200, deadline=None)
def test_monotone_in_query_deny_share(f: ClusterFeatures, k: int, extra: int) -> None:
    """Turning comments/support into queries or denials never lowers the score."""
    base = replace(f, comment=f.comment + k + extra)
    more = replace(f, comment=f.comment + k, query=f.query + extra)
    deny = replace(f, comment=f.comment + k, deny=f.deny + extra)
    assert scorer.score(base) <= scorer.score(more) + 1e-12
    assert scorer.score(base) <= scorer.score(deny) + 1e-12


def test_growth_and_enquiry_raise_the_score() -> None:
    lone = feats(claim_prob=0.4)
    assert scorer.score(lone) < 0.5
    busy = feats(claim_prob=0.4, size=60, roots=8, replies=40, reposts=12, velocity=8.0,
                 prev_velocity=2.0, peak_velocity=8.0, query=12, deny=8, comment=20,
                 age_s=900)
    assert scorer.score(busy) > 0.5
    contributions = scorer.explain(busy)
    assert contributions["query_deny"] > 0 and contributions["velocity"] > 0


def test_calibration_lone_root_scores_its_claim_probability() -> None:
    """With the neutral settings, a lone root with no replies scores its claim probability:
    the classifier's 0.5 is the rumour decision."""
    for p in (0.05, 0.3, 0.5, 0.7, 0.95):
        assert scorer.score(feats(claim_prob=p)) == pytest.approx(p, abs=1e-3)
    assert scorer.flagged(feats(claim_prob=0.51))
    assert not scorer.flagged(feats(claim_prob=0.49))
    assert not RumourScorer(RumourSettings(min_size_to_flag=3)).flagged(feats(claim_prob=0.9))


def test_fitted_settings_keep_the_decision_monotone_in_claim_prob() -> None:
    fitted = RumourScorer(RumourSettings.from_weights())
    s = fitted.settings
    assert s.w_claim > 0 and s.w_roots >= 0
    probs = [fitted.score(feats(claim_prob=p)) for p in np.linspace(0.01, 0.99, 25)]
    assert probs == sorted(probs)


def test_official_sources_lower_the_score() -> None:
    f = feats(claim_prob=0.6, size=10, roots=3, replies=7)
    assert scorer.score(replace(f, official_posts=5)) < scorer.score(f)


def test_lifecycle_sequence() -> None:
    """A synthetic rumour: emerging, growing, peaking, fading, resolved."""
    seq = [
        feats(size=2, age_s=60, velocity=0.4, prev_velocity=0.0, peak_velocity=0.4),
        feats(size=30, age_s=900, velocity=5.0, prev_velocity=1.0, peak_velocity=5.0),
        feats(size=60, age_s=1500, velocity=5.0, prev_velocity=6.0, peak_velocity=6.0),
        feats(size=70, age_s=3000, velocity=0.6, prev_velocity=1.5, peak_velocity=6.0),
        feats(size=70, age_s=30000, velocity=0.0, prev_velocity=0.0, peak_velocity=6.0,
              idle_s=7 * 3600),
    ]
    assert [scorer.lifecycle(f) for f in seq] == [
        "emerging", "growing", "peaking", "fading", "resolved"]
    assert scorer.lifecycle(replace(seq[1], resolved=True)) == "resolved"
    assert scorer.lifecycle(replace(seq[2], idle_s=1000)) == "fading"
    custom = RumourScorer(RumourSettings(fading_idle_s=60))
    assert custom.lifecycle(replace(seq[2], idle_s=61)) == "fading"


def test_clusterer_features_velocity_and_roots() -> None:
    c = SimilarityClusterer()
    t0 = 1_700_000_000.0
    posts: list[dict[str, Any]] = [
        {"id": "1", "text": "Reports of shots fired at Central Station, unconfirmed",
         "created_at": "2023-11-14T22:13:20Z", "author": {"id": "a", "followers": 10}},
        {"id": "2", "text": "Shots fired at Central Station? unconfirmed reports",
         "created_at": "2023-11-14T22:14:20Z", "author": {"id": "b", "followers": 20}},
        {"id": "3", "text": "@a is this true?", "reply_to": "1",
         "created_at": "2023-11-14T22:15:20Z", "author": {"id": "c", "followers": 5}},
        {"id": "4", "text": "Lovely weather in the park", "created_at": "2023-11-14T22:16:20Z"},
    ]
    ids = [c.add(p, t0 + 60 * i).cluster_id for i, p in enumerate(posts)]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    f = c.features(ids[0], t0 + 180)
    assert (f.size, f.roots, f.replies, f.distinct_authors, f.reach) == (3, 2, 1, 3, 35)
    assert f.velocity == pytest.approx(3 * 60 / 300)
    s = SingletonClusterer()
    assert s.add(posts[0], t0).cluster_id != s.add(posts[1], t0).cluster_id


def test_dutch_cues_raise_the_claim_probability() -> None:
    clf = load_default_claim_classifier()
    rumour = {"text": "Naar verluidt zijn er schoten gelost bij het station, onbevestigd"}
    calm = {"text": "Mooi weer vandaag op het Museumplein"}
    assert clf.prob(rumour) > clf.prob(calm)


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_garbage_text_never_crashes(text: str) -> None:
    clf = load_default_claim_classifier()
    p = clf.prob({"text": text, "author": {"followers": "many", "verified": "yes"}})
    assert 0.0 <= p <= 1.0


def _uncached_cue_logit(clf: ClaimClassifier, post: dict[str, Any]) -> float:
    dense, words = claim_features(post)
    z = float(clf.bias + np.dot(clf.w_dense, (dense - clf.mean) / clf.scale))
    buckets = hashed_ngrams(words, clf.hash_bits)
    if buckets:
        z += float(clf.w_hash[buckets].sum()) / math.sqrt(len(buckets))
    return z


_CACHE_TEXTS = ["Naar verluidt schoten bij het station", "Is dit waar? Bron?",
                "BREAKING: 3 dead at the stadium", "", "Mooi weer op het Museumplein"]
_AUTHORS = st.one_of(st.none(), st.fixed_dictionaries(
    {}, optional={"followers": st.one_of(st.integers(-5, 10**7), st.floats(), st.text()),
                  "verified": st.one_of(st.booleans(), st.text(max_size=3))}))


@given(pairs=st.lists(st.tuples(st.one_of(st.sampled_from(_CACHE_TEXTS), st.text(max_size=40)),
                                _AUTHORS), min_size=1, max_size=12),
       cache_size=st.integers(1, 4))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cue_logits_per_text_cache_changes_nothing(
        pairs: list[tuple[str, dict[str, Any] | None]], cache_size: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The text's part of the logit is cached per text; the author's part is not: posts
    repeating a text under other authors get exactly the uncached logit; the cache stays
    within TEXT_CACHE_SIZE."""
    import models.rumour as rumour_module

    monkeypatch.setattr(rumour_module, "TEXT_CACHE_SIZE", cache_size)
    clf = replace(load_default_claim_classifier(), embedder=None)  # a fresh, empty cache
    posts = [{"text": t} if a is None else {"text": t, "author": a} for t, a in pairs]
    for _ in range(2):  # the second pass reads what the first one cached
        got = clf._cue_logits(posts)
        want = [_uncached_cue_logit(clf, p) for p in posts]
        assert np.allclose(got, want, rtol=0, atol=1e-9)
        assert len(clf._text_logits) <= cache_size


def test_odd_posts_never_crash() -> None:
    clf = load_default_claim_classifier()
    odd: tuple[dict[str, Any], ...] = (
        {}, {"text": None}, {"text": 12}, {"text": "\x00\ud800 \\u00e9"},
        {"text": "x" * 100_000}, {"text": "ok", "author": "someone"},
                 {"text": "ok", "author": {"followers": float("nan")}})
    for post in odd:
        assert 0.0 <= clf.prob(post) <= 1.0
    vec, _ = claim_features({"text": "BREAKING: 3 dead?"})
    assert vec.shape == (len(DENSE_NAMES),)


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    d = len(DENSE_NAMES)
    clf = ClaimClassifier(rng.normal(size=d), rng.uniform(0.5, 2, size=d),
                          rng.normal(size=d), rng.normal(size=1 << 10).astype(np.float16)
                          .astype(float), 0.25, hash_bits=10, meta={"x": 1})
    clf.save(tmp_path)
    back = ClaimClassifier.load(tmp_path)
    post = {"text": "Unconfirmed: gunman named by police #breaking", "author": {
        "followers": 1200, "verified": True}}
    assert back.prob(post) == pytest.approx(clf.prob(post), abs=1e-3)
    assert back.meta == {"x": 1} and back.hash_bits == 10
    (tmp_path / "config.json").write_text(json.dumps({"kind": "other"}), encoding="utf-8")
    with pytest.raises(ValueError, match="rumour"):
        ClaimClassifier.load(tmp_path)


def test_shipped_weights_are_small_and_load() -> None:
    files = sorted(p.name for p in DEFAULT_WEIGHTS.iterdir())
    assert files == ["config.json", "weights.npz"]
    assert sum(p.stat().st_size for p in DEFAULT_WEIGHTS.iterdir()) < 2_000_000
    clf = ClaimClassifier.load(DEFAULT_WEIGHTS)
    assert np.abs(clf.w_dense).sum() > 0
    if clf.embed_dim:  # an embedding model carries its cue-only fallback
        assert clf.fallback is not None and clf.fallback.embed_dim == 0
        assert clf.embedder_name and not clf.accepts(HashingEmbedder())
        post = {"text": "Reports of shots fired at the station, unconfirmed"}
        assert clf.prob(post) == pytest.approx(clf.fallback.prob(post))
        vec = np.zeros(clf.embed_dim)
        vec[0] = 1.0
        assert 0.0 < clf.prob(post, vec) < 1.0


# ------------------------------------------------------------------ embedding model


class FakeE5:
    """Deterministic stand-in for the e5 embedder: a model identity containing
    ``e5-small`` (like the converted model's directory), unit vectors from hashed words."""

    path = Path("fake-e5-small")

    def __init__(self, dim: int = 8) -> None:
        self._dim = dim
        self.calls = 0
        self.texts = 0

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Any) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in str(text).lower().split():
                out[i, sum(map(ord, word)) % self._dim] += 1.0
            n = float(np.linalg.norm(out[i]))
            out[i] = out[i] / n if n else out[i]
        return out


def embedding_model(dim: int = 8, seed: int = 5) -> ClaimClassifier:
    rng = np.random.default_rng(seed)
    d = len(DENSE_NAMES)
    fallback = ClaimClassifier(np.zeros(d), np.ones(d), rng.normal(size=d) * 0.1,
                               np.zeros(1 << 10), -0.2, hash_bits=10)
    return ClaimClassifier(rng.normal(size=d) * 0.1, rng.uniform(0.5, 2, size=d),
                           rng.normal(size=d) * 0.1, np.zeros(1 << 10), 0.1, hash_bits=10,
                           w_embed=rng.normal(size=dim), embed_mean=rng.normal(size=dim) * 0.1,
                           embed_scale=rng.uniform(0.5, 2, size=dim), embedder_name="e5-small",
                           fallback=fallback)


POSTS: list[dict[str, Any]] = [{"text": "Reports of shots fired at Central Station, unconfirmed"},
         {"text": "Lovely weather in the park today"},
         {"text": "BREAKING: hostages taken in a cafe?", "author": {"followers": 5000}}]


def test_embedding_model_uses_given_or_computed_vectors() -> None:
    fake = FakeE5()
    clf = embedding_model()
    texts = [str(p["text"]) for p in POSTS]
    vecs = fake.embed(texts)
    given_vectors = clf.probs(POSTS, vectors=vecs)
    attached = clf.with_embedder(fake)
    assert attached.embedder is fake
    assert attached.probs(POSTS) == pytest.approx(given_vectors)
    assert [clf.prob(p, v) for p, v in zip(POSTS, vecs, strict=True)] == pytest.approx(
        given_vectors)
    # the vectors matter: other vectors, other probabilities
    assert clf.probs(POSTS, vectors=vecs[::-1]) != pytest.approx(given_vectors)
    assert "embedding" in clf.explain(POSTS[0], vector=vecs[0])
    with pytest.raises(ValueError, match="shape"):
        clf.probs(POSTS, vectors=np.zeros((3, 5)))


def test_embedding_model_falls_back_without_vectors() -> None:
    clf = embedding_model()
    assert clf.fallback is not None
    assert clf.probs(POSTS) == pytest.approx(clf.fallback.probs(POSTS))
    # incompatible embedders are not attached: wrong identity, wrong dimension, none
    for other in (HashingEmbedder(dim=8), FakeE5(dim=16), None):
        assert not clf.accepts(other)
        assert clf.with_embedder(other).embedder is None
        assert clf.with_embedder(other).probs(POSTS) == pytest.approx(
            clf.fallback.probs(POSTS))
    cached = CachedEmbedder(FakeE5())
    assert clf.accepts(cached) and "e5-small" in embedder_identity(cached)
    # a cue-only model ignores vectors and never wants them
    cue = clf.fallback
    assert not cue.wants_vectors(FakeE5()) and cue.embed_dim == 0
    assert cue.probs(POSTS, vectors=np.zeros((3, 8))) == pytest.approx(cue.probs(POSTS))


def test_embedding_model_save_load_round_trip(tmp_path: Path) -> None:
    clf = embedding_model()
    clf.meta = {"x": 2}
    clf.save(tmp_path)
    back = ClaimClassifier.load(tmp_path)
    vecs = FakeE5().embed([str(p["text"]) for p in POSTS])
    assert back.embed_dim == 8 and back.embedder_name == "e5-small" and back.meta == {"x": 2}
    assert back.probs(POSTS, vectors=vecs) == pytest.approx(clf.probs(POSTS, vectors=vecs),
                                                            abs=1e-4)
    assert back.probs(POSTS) == pytest.approx(clf.probs(POSTS), abs=1e-3)  # fallback
    fake = FakeE5()
    loaded = ClaimClassifier.load(tmp_path, embedder=fake)
    assert loaded.embedder is fake
    assert loaded.probs(POSTS) == pytest.approx(clf.probs(POSTS, vectors=vecs), abs=1e-4)


def test_default_loader_attaches_only_a_matching_embedder() -> None:
    base = load_default_claim_classifier()
    assert load_default_claim_classifier(HashingEmbedder()).embedder is None
    assert load_default_claim_classifier(None) is base
    fake = FakeE5(dim=base.embed_dim or 8)
    assert (load_default_claim_classifier(fake).embedder is fake) == bool(base.embed_dim)


def test_tracker_passes_the_clusterers_vectors_to_the_claim_model() -> None:
    from models.clusters import ClusterSettings, OnlineClusterer
    from models.rumour_tracker import RumourTracker

    inner = FakeE5()
    clf = embedding_model()
    tracker = RumourTracker(OnlineClusterer(ClusterSettings(), CachedEmbedder(inner)),
                            RumourScorer(RumourSettings()), claims=clf)
    posts = [{"id": f"p{i}", "text": p["text"], "created_at": f"2024-01-01T10:0{i}:00Z",
              **({"author": p["author"]} if "author" in p else {})}
             for i, p in enumerate(POSTS)]
    posts.append({"id": "r", "text": "is this true?", "reply_to": "p0",
                  "created_at": "2024-01-01T10:05:00Z"})
    tracker.process(posts)
    expected = clf.probs(POSTS, vectors=FakeE5().embed([str(p["text"]) for p in POSTS]))
    for post, prob in zip(posts, expected, strict=False):
        c = tracker.clusterer.cluster_of(str(post["id"]))
        assert c is not None and c.claim_n == 1
        assert c.claim_prob == pytest.approx(prob, abs=1e-6)
    # each root text embedded once: the clusterer found the claim model's vectors cached
    assert inner.texts == len(POSTS)
    # a clusterer without an embedder: the claim model's fallback answers
    plain = RumourTracker(OnlineClusterer(ClusterSettings(), None),
                          RumourScorer(RumourSettings()), claims=clf)
    plain.process(posts[:1])
    c0 = plain.clusterer.cluster_of("p0")
    assert c0 is not None and clf.fallback is not None
    assert c0.claim_prob == pytest.approx(clf.fallback.prob(POSTS[0]), abs=1e-6)


@pytest.fixture(scope="module")
def with_e5() -> ClaimClassifier:
    """The shipped embedding model with multilingual-e5-small attached (loads the
    transformer once for the tests that use it)."""
    clf = load_default_claim_classifier()
    if not clf.embed_dim:
        pytest.skip("the shipped claim model uses no sentence embeddings")
    from models.embed import load_embedder

    try:
        embedder = load_embedder("default", threads=1)
    except (ImportError, OSError, FileNotFoundError) as exc:
        pytest.skip(f"embedding model unavailable: {exc}")
    assert clf.accepts(embedder)
    return load_default_claim_classifier(embedder)


@pytest.mark.slow
def test_shipped_model_with_the_real_embedder(with_e5: ClaimClassifier) -> None:
    """The shipped embedding model with multilingual-e5-small (loads the transformer)."""
    rumour = {"text": "Unconfirmed reports: gunman has taken hostages in a cafe, police "
                      "not yet confirming"}
    calm = {"text": "Thoughts with everyone affected, stay safe"}
    probs = with_e5.probs([rumour, calm])
    assert all(0.0 < p < 1.0 for p in probs)
    assert probs[0] > probs[1]


@pytest.mark.slow
def test_shipped_model_keeps_festival_chatter_below_hedged_incident_claims(
        with_e5: ClaimClassifier) -> None:
    """Trained with everyday tweets as non-rumours (``train_rumour --chatter``), the shipped
    embedding model scores Dutch and English festival chatter below the lone-root flag bar
    and hedged incident claims above it (hand-written posts, in no data set)."""
    author = {"followers": 150, "verified": False}
    chatter = ["beste tosti ooit bij een kraampje op de Westermarkt",
               "Cheapest beer I've ever had at de Dam 🍻",
               "Onze kids hebben al 15 euro verdiend met limonade verkopen haha",
               "zeiknat geregend bij de Noordermarkt 🙄 #koningsdag",
               "Mooie spullen gescoord op de vrijmarkt in de Jordaan",
               "Wat een zon vandaag, heerlijk op de gracht"]
    claims = ["BREAKING: reports of shots fired near Dam Square, unconfirmed",
              "Naar verluidt is er een steekpartij op het Leidseplein, klopt dit?",
              "Unconfirmed: a stage collapsed at Museumplein, people trapped"]
    p_chat = with_e5.probs([{"text": t, "author": author} for t in chatter])
    p_claim = with_e5.probs([{"text": t, "author": author} for t in claims])
    assert max(p_chat) < 0.45 < 0.6 < min(p_claim), (p_chat, p_claim)


@pytest.mark.slow
def test_shipped_model_on_the_dutch_claims_test_set(with_e5: ClaimClassifier) -> None:
    """The Dutch root posts written blind for the project (docs/rumour-model.md, "Dutch"):
    the classifier alone at 0.5 scored 0.562 macro-F1 before the Dutch training rows (it
    flagged 13 % of posts that are 40 % rumours) and 0.712 with them. The floor leaves room
    for retraining; the figure recorded at training time is the same computation."""
    from models.training.train_rumour import DEFAULT_TEST, macro_f1, read_labelled, roc_auc

    rows = read_labelled(DEFAULT_TEST)
    y = np.asarray([1.0 if lab else 0.0 for _, lab, _ in rows])
    p = np.asarray(with_e5.probs([post for post, _, _ in rows]))
    mf, _ = macro_f1(y, p)
    assert len(rows) == 150 and mf >= 0.65 and roc_auc(y, p) >= 0.8, (mf, roc_auc(y, p))
    recorded = with_e5.meta["test_sets"]["nl-claims-test"]
    assert recorded["n"] == 150 and recorded["macro_f1"] >= 0.65
    assert with_e5.meta["extra_sets"] == ["nl-claims-dev", "nl-chatter"]


def test_untrained_classifier_is_neutral() -> None:
    assert ClaimClassifier.untrained().prob({"text": "anything"}) == pytest.approx(0.5)


def test_evaluate_and_latency_on_a_tiny_stream() -> None:
    posts = [
        {"id": "r1", "text": "BREAKING: reports of hostages, unconfirmed",
         "created_at": "2024-01-01T10:00:00Z"},
        {"id": "x", "text": "@r1 is this true?", "reply_to": "r1",
         "created_at": "2024-01-01T10:01:00Z"},
        {"id": "n1", "text": "My thoughts are with everyone, so sad",
         "created_at": "2024-01-01T10:02:00Z"},
    ]
    report = evaluate_rumours(posts, {"r1": True, "n1": False})
    assert report.online.n == 2 and report.n_posts == 3
    assert set(report.to_dict()) >= {"online", "at_end"}
    report1 = evaluate_rumours(posts, {"r1": True, "n1": False},
                               clusterer_factory=SingletonClusterer)
    assert report1.clusterer == "SingletonClusterer"
    lat = detection_latency(posts, stances={"x": "query"}, variant="oracle")
    assert lat.threads == 2 and lat.flagged <= 2
    lat2 = detection_latency(posts, stance_fn=lambda texts, parents: ["deny"] * len(texts))
    assert lat2.threads == 2


@pytest.mark.skipif(not (DATA / "rumour").is_dir(), reason=f"shared data absent: {DATA}")
def test_pheme_event_smoke() -> None:
    """The shipped model separates one PHEME event's classes better than chance (it was
    trained on it; the held-out figures are in docs/rumour-model.md)."""
    folder = DATA / "rumour"
    posts, gold = [], {}
    for kind in ("rumours", "non-rumours"):
        with (folder / f"pheme-gurlitt-{kind}.labels.jsonl").open(encoding="utf-8") as fh:
            gold.update({(r := json.loads(line))["id"]: r["rumour"] for line in fh})
        with (folder / f"pheme-gurlitt-{kind}.posts.jsonl").open(encoding="utf-8") as fh:
            posts += [json.loads(line) for line in fh]
    posts.sort(key=lambda p: p["created_at"])
    report = evaluate_rumours(posts, gold)
    assert report.online.macro_f1 > 0.55


@given(size=st.integers(1, 5000), replies=st.integers(0, 500), reposts=st.integers(0, 5000),
       query=st.integers(0, 50), deny=st.integers(0, 50), verified=st.integers(0, 50),
       official=st.integers(0, 5), claim=st.floats(0.01, 0.99),
       velocity=st.floats(0, 500), reach=st.integers(0, 10**8))
@settings(max_examples=200, deadline=None)
def test_score_drivers_sum_to_the_scores_logit(size: int, replies: int, reposts: int,
                                               query: int, deny: int, verified: int,
                                               official: int, claim: float, velocity: float,
                                               reach: int) -> None:
    """The four drivers the command post reads ("why is this flagged") are the score's
    logit split by group: nothing is lost and nothing counted twice."""
    f = feats(size=size, roots=max(1, size - replies - reposts), replies=replies,
              reposts=reposts, query=query, deny=deny, verified_posts=min(size, verified),
              official_posts=min(size, official), claim_prob=claim, velocity=velocity,
              reach=reach)
    scorer = RumourScorer()
    terms = scorer.explain(f)
    drivers = score_drivers(terms)
    assert list(drivers) == ["claim", "spread", "doubt", "sources"]
    assert math.isclose(sum(drivers.values()), sum(terms.values()), abs_tol=0.01)
    assert scorer.score_of(terms) == scorer.score(f)


def test_why_names_the_strongest_drivers_in_dutch_or_english() -> None:
    drivers = {"claim": -0.62, "spread": 1.31, "doubt": 0.04, "sources": 0.2}
    assert why(drivers) == "spread +1.3, claim -0.6, sources +0.2"
    assert why(drivers, "nl", top=2) == "verspreiding +1,3, bewering -0,6"
    assert why(drivers, min_abs=1.0) == "spread +1.3"
    assert why({}) == "" and why({"claim": float("nan"), "spread": "x"}) == ""
    assert why(None) == "" and why([("claim", 1.0)]) == ""  # not a snapshot's drivers
