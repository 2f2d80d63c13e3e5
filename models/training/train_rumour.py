"""Train crowdwatch's rumour claim classifier and score, validated leave-one-event-out.

    python -m models.training.train_rumour --seed 13 [--out models/weights/rumour-default]

Data: the shared PHEME source posts ``rumour/pheme-{event}-{rumours,non-rumours}`` (the
``retweets`` label is never used).  For every event, a model is trained on all *other*
events and tested on it; the table gives per-event macro-F1 over rumour / non-rumour at
the fixed decision threshold 0.5 (no threshold tuning on the test event), the mean over
the events that have both classes (ferguson, gurlitt, putinmissing, sydneysiege) and,
for the lopsided ones, the figures all the same.  The shipped model is then trained on
all events with the same settings.

Claim classifier (``--embedder default``, the shipped configuration): logistic regression
on the 42 cue features + the multilingual-e5-small sentence embedding of the post (384-d,
the vectors the production clusterer computes), no n-grams; it carries a cue + n-gram
*fallback* model (the ``--embedder off`` model) for deployments without the embedder.
Embeddings of the PHEME posts are cached once under ``--embed-cache`` (default /tmp).
``--chatter N`` (default 100) adds N everyday tweets per language (the shared sentiment
sets' UMSAB train splits) to the embedding model's training sets as non-rumours of a
pseudo-event that is never held out: PHEME holds only incident news, and without them the
model gave festival chatter P(rumour) around 0.5.  ``--extra`` sets join the embedding
model's training sets the same way, each a pseudo-event of its own (default, in
``models/training/data``: ``nl-claims-dev``, 120 Dutch root posts at Dutch events, half
rumours; ``nl-chatter``, 240 everyday Dutch posts); the ``--test-set`` files (default: the
Dutch ``nl-claims-test``) only score the shipped classifier.

Training: full-batch logistic regression in numpy (Adam on the L2-regularised,
sample-weighted log loss).  Sample weights make the two classes weigh the same within
every event that has both, and give one-class events (charliehebdo, ebola-essien,
prince-toronto, whose identity would otherwise leak into the label) a reduced total
weight; hashed n-gram buckets occurring in fewer than ``--min-events`` training events
are masked out (event-specific words such as "ferguson" never get a weight).

Score coefficients (``w_claim``, ``w_roots``, ``bias``): fitted with the cluster sizes of
``--clusterer`` (default ``production``: ``RumourTracker`` + ``OnlineClusterer`` with the
same embedder, replayed one post at a time as ``evaluate_tracker`` does; the reasoned
terms of the score enter the fit as a fixed offset), on nested out-of-event claim
probabilities; the held-out event is then scored with ``evaluate_tracker``.
Deterministic: full batch, no randomness (the seed is kept for the command line's
contract).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import classification_report, pooled_report
from models.hf import PRECISIONS, encoder_precision
from models.rumour import (
    DEFAULT_WEIGHTS,
    DENSE_NAMES,
    HASH_BITS,
    ClaimClassifier,
    OnlineClustererAdapter,
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
    post_time,
)
from models.training import labelled

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_EMBED_CACHE = Path(tempfile.gettempdir()) / "crowdwatch-rumour-embeddings"
EVENTS = ("charliehebdo", "ebola-essien", "ferguson", "gurlitt", "prince-toronto",
          "putinmissing", "sydneysiege")
BOTH_CLASSES = ("ferguson", "gurlitt", "putinmissing", "sydneysiege")
LABELS = ("rumour", "non-rumour")
# the identity (see models.rumour.embedder_identity) a model trained on each embedder needs
EMBEDDER_NAMES = {"default": "e5-small", "hashing": "hashingembedder"}
# terms of the score that are not fitted: a fixed offset in the fit
REASONED_TERMS = ("engagement", "velocity", "acceleration", "query_deny", "unverified",
                  "official", "reach")


@dataclass
class Dataset:
    dense: np.ndarray          # n x d cue features
    rows: np.ndarray           # CSR-ish coordinates of the hashed n-grams
    cols: np.ndarray
    vals: np.ndarray
    y: np.ndarray              # 1 = rumour
    event: np.ndarray          # event index
    n: int
    emb: np.ndarray | None = None  # n x k sentence embeddings (None: cue model)


def read_posts(data: Path) -> list[tuple[dict[str, object], bool, str]]:
    out: list[tuple[dict[str, object], bool, str]] = []
    folder = data / "rumour"
    for event in EVENTS:
        for kind in ("rumours", "non-rumours"):
            base = folder / f"pheme-{event}-{kind}"
            if not Path(f"{base}.posts.jsonl").exists():
                continue
            posts, gold = labelled.read_labelled(base, "rumour")
            out += [(row, bool(gold[str(row["id"])]), event) for row in posts
                    if str(row["id"]) in gold]
    return out


CHATTER = "chatter"  # the pseudo-event of everyday posts (never held out, never scored)
CHATTER_LANGUAGES = ("en", "de", "es", "fr", "it", "pt")
# Dutch root posts written for the project (docs/rumour-model.md, "Dutch"): the dev set
# trains, the test set is only scored
NL_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_EXTRA = (NL_DATA / "nl-claims-dev", NL_DATA / "nl-chatter")
DEFAULT_TEST = NL_DATA / "nl-claims-test"


def read_labelled(base: Path) -> list[tuple[dict[str, object], bool, str]]:
    """``BASE.posts.jsonl`` with the ``rumour`` label of ``BASE.labels.jsonl``; the event is
    the set's name (``extra:NAME``)."""
    posts, gold = labelled.read_labelled(base, "rumour")
    return [(post, bool(gold[str(post["id"])]), f"extra:{base.name}") for post in posts
            if str(post["id"]) in gold]


def read_chatter(data: Path, per_language: int, seed: int
                 ) -> list[tuple[dict[str, object], bool, str]]:
    """Everyday posts as non-rumours: ``per_language`` posts of each of
    ``CHATTER_LANGUAGES`` from the shared sentiment sets (``sentiment/umsab-{lang}-train``:
    tweets about anything, not about an incident), drawn with ``seed``.  PHEME holds only
    news about incidents, so without them the claim model never sees the chatter that
    fills most of a festival's stream (and gives "beste tosti ooit" P(rumour) 0.6)."""
    out: list[tuple[dict[str, object], bool, str]] = []
    rng = np.random.default_rng(seed)
    for lang in CHATTER_LANGUAGES:
        path = data / "sentiment" / f"umsab-{lang}-train.posts.jsonl"
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        rows = [r for r in rows if str(r.get("text") or "").strip()]
        pick = rng.permutation(len(rows))[:per_language]
        out += [(rows[i], False, CHATTER) for i in sorted(pick)]
    return out


def featurise(items: list[tuple[dict[str, object], bool, str]], bits: int) -> Dataset:
    dense, rows, cols, vals, ys, ev = [], [], [], [], [], []
    for i, (post, label, event) in enumerate(items):
        vec, words = claim_features(post)
        dense.append(vec)
        buckets = hashed_ngrams(words, bits)
        if buckets:
            rows += [i] * len(buckets)
            cols += buckets
            vals += [1.0 / np.sqrt(len(buckets))] * len(buckets)
        ys.append(1.0 if label else 0.0)
        ev.append(EVENTS.index(event) if event in EVENTS else len(EVENTS))  # chatter
    return Dataset(np.asarray(dense), np.asarray(rows, dtype=np.int64),
                   np.asarray(cols, dtype=np.int64), np.asarray(vals), np.asarray(ys),
                   np.asarray(ev), len(items))


def sample_weights(ds: Dataset, idx: np.ndarray, one_class_weight: float) -> np.ndarray:
    """Within each event both classes weigh the same; every two-class event weighs in
    proportion to its size; one-class events get ``one_class_weight`` of their size."""
    w = np.zeros(len(idx))
    y, ev = ds.y[idx], ds.event[idx]
    for e in np.unique(ev):
        m = ev == e
        size = m.sum()
        pos, neg = (m & (y == 1)).sum(), (m & (y == 0)).sum()
        if pos and neg:
            w[m & (y == 1)] = size / (2 * pos)
            w[m & (y == 0)] = size / (2 * neg)
        else:
            w[m] = one_class_weight
    # overall the two classes weigh the same too: the decision threshold 0.5 then fits a
    # stream that is about half rumours
    # (both factors from the same total: scaling one class first used to change the total
    # the other was scaled to, 0.506 / 0.494 on the PHEME events)
    total = w.sum()
    sums = [w[y == c].sum() for c in (0, 1)]
    for c in (0, 1):
        if sums[c] > 0:
            w[y == c] *= 0.5 * total / sums[c]
    return w / w.mean()


def _dense_block(ds: Dataset, idx: np.ndarray, use_embed: bool) -> np.ndarray:
    if use_embed and ds.emb is not None:
        return np.hstack([ds.dense[idx], ds.emb[idx]])
    return ds.dense[idx]


def train(ds: Dataset, idx: np.ndarray, *, bits: int, l2_dense: float, l2_hash: float,
          min_events: int, one_class_weight: float, steps: int, lr: float,
          use_hash: bool = True, use_embed: bool = False,
          embedder_name: str = "") -> ClaimClassifier:
    """One classifier on the rows ``idx``; ``use_embed``: cue features + ``ds.emb``
    (standardised like the cues, L2 ``l2_dense`` on both)."""
    x = _dense_block(ds, idx, use_embed)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    y = ds.y[idx]
    sw = sample_weights(ds, idx, one_class_weight)
    n, d = xs.shape
    dim = 1 << bits
    # sparse part restricted to the training rows, renumbered 0..n-1 (none when unused)
    pos = np.full(ds.n, -1)
    pos[idx] = np.arange(n)
    keep = (pos[ds.rows] >= 0) & use_hash
    r, c, v = pos[ds.rows[keep]], ds.cols[keep], ds.vals[keep]
    # buckets seen in at least min_events distinct training events
    ev_of = ds.event[idx][r]
    pairs = np.unique(c * 16 + ev_of)
    per_bucket = np.bincount(pairs // 16, minlength=dim)
    mask = (per_bucket >= min_events).astype(float) if use_hash else np.zeros(dim)
    wd, wh, b = np.zeros(d), np.zeros(dim), np.zeros(1)
    m: list[np.ndarray] = [np.zeros(d), np.zeros(dim), np.zeros(1)]
    s: list[np.ndarray] = [np.zeros(d), np.zeros(dim), np.zeros(1)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        z = xs @ wd + b[0] + np.bincount(r, weights=v * wh[c], minlength=n)
        p = 1.0 / (1.0 + np.exp(-z))
        g = sw * (p - y) / n
        gd = xs.T @ g + 2 * l2_dense * wd
        gh = (np.bincount(c, weights=v * g[r], minlength=dim) + 2 * l2_hash * wh) * mask
        gb = np.array([g.sum()])
        grads = [gd, gh, gb]
        params = [wd, wh, b]
        for k in range(3):
            m[k] = beta1 * m[k] + (1 - beta1) * grads[k]
            s[k] = beta2 * s[k] + (1 - beta2) * grads[k] ** 2
            mh = m[k] / (1 - beta1 ** t)
            sh = s[k] / (1 - beta2 ** t)
            params[k] = params[k] - lr * mh / (np.sqrt(sh) + eps)
        wd, wh, b = params[0], params[1] * mask, params[2]
    k = len(DENSE_NAMES)
    if x.shape[1] == k:
        return ClaimClassifier(mean, scale, wd, wh, float(b[0]), bits)
    return ClaimClassifier(mean[:k], scale[:k], wd[:k], wh, float(b[0]), bits,
                           w_embed=wd[k:], embed_mean=mean[k:], embed_scale=scale[k:],
                           embedder_name=embedder_name)


def predict(model: ClaimClassifier, ds: Dataset, idx: np.ndarray) -> np.ndarray:
    """P(rumour) of the rows ``idx`` (an embedding model reads ``ds.emb``)."""
    xs = (ds.dense[idx] - model.mean) / model.scale
    pos = np.full(ds.n, -1)
    pos[idx] = np.arange(len(idx))
    keep = pos[ds.rows] >= 0
    r, c, v = pos[ds.rows[keep]], ds.cols[keep], ds.vals[keep]
    z = xs @ model.w_dense + model.bias + np.bincount(r, weights=v * model.w_hash[c],
                                                      minlength=len(idx))
    if model.w_embed is not None:
        if ds.emb is None:
            raise ValueError("an embedding model needs the dataset's embeddings")
        z = z + ((ds.emb[idx] - model.embed_mean) / model.embed_scale) @ model.w_embed
    return 1.0 / (1.0 + np.exp(-z))


def macro_f1(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    gold = ["rumour" if t else "non-rumour" for t in y]
    pred = ["rumour" if q >= threshold else "non-rumour" for q in p]
    rep = classification_report(gold, pred, LABELS)
    return rep.macro_f1, rep.f1["rumour"]


def loeo(ds: Dataset, **kw: Any) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for e, event in enumerate(EVENTS):
        test = np.flatnonzero(ds.event == e)
        train_idx = np.flatnonzero(ds.event != e)
        model = train(ds, train_idx, **kw)
        p = predict(model, ds, test)
        mf, rf = macro_f1(ds.y[test], p)
        table[event] = {"n": float(len(test)), "rumour_share": float(ds.y[test].mean()),
                        "macro_f1": mf, "rumour_f1": rf,
                        "flagged_share": float((p >= 0.5).mean())}
    return table


def event_streams(items: list[tuple[dict[str, object], bool, str]]
                  ) -> dict[str, list[tuple[dict[str, object], bool]]]:
    """Per event: (post, label) in time order (both classes merged, as a stream)."""
    out: dict[str, list[tuple[dict[str, object], bool]]] = {}
    for post, label, event in items:
        out.setdefault(event, []).append((post, label))
    for rows in out.values():
        rows.sort(key=lambda r: (str(r[0].get("created_at") or ""), str(r[0].get("id"))))
    return out


Replay = tuple[np.ndarray, list[str], np.ndarray]  # roots, cluster ids, offsets per post


def roots_online(stream: list[tuple[dict[str, object], bool]],
                 factory: Any = SimilarityClusterer) -> Replay:
    """The roots count of each post's cluster when it is processed, the cluster ids and
    (zero) offsets: the fit of the built-in clusterers' score ignores the reasoned terms."""
    clusterer = factory()
    out, ids = [], []
    for post in stream:
        now = post_time(post[0]) or 0.0
        a = clusterer.add(post[0], now)
        out.append(clusterer.features(str(a.cluster_id), now).roots)
        ids.append(str(a.cluster_id))
    return np.asarray(out, dtype=float), ids, np.zeros(len(out))


def production_tracker(embedder: Any, settings: RumourSettings,
                       claims: ClaimClassifier | None = None) -> Any:
    """What ``crowdwatch eval rumours`` runs: ``RumourTracker`` over ``OnlineClusterer``
    (default cluster settings, ``embedder``); no stance model (PHEME holds source posts
    only)."""
    from models.clusters import ClusterSettings, OnlineClusterer
    from models.rumour_tracker import RumourTracker

    return RumourTracker(OnlineClusterer(ClusterSettings(), embedder), RumourScorer(settings),
                         claims=claims)


def replay_production(stream: list[tuple[dict[str, object], bool]], embedder: Any) -> Replay:
    """Replay one post at a time through the production tracker (as
    ``evaluate_tracker(..., batch=1)`` does, same order) and record, per post, its
    cluster's roots, id and the sum of the reasoned score terms right after it joined
    (the features the tracker scores it with).  Clustering does not depend on the claim
    model, so one replay per event serves every fold."""
    from models.rumour_tracker import post_ts

    tracker = production_tracker(embedder, RumourSettings())
    ordered = sorted(stream, key=lambda r: post_ts(r[0], 0.0))
    if [r[0]["id"] for r in ordered] != [r[0]["id"] for r in stream]:
        raise ValueError("stream is not in evaluate_tracker's order")
    roots, ids, offsets = [], [], []
    for post, _ in ordered:
        out = tracker.process([post])
        ann = next(a for a in out.annotations if a.id == post["id"])
        c = next(c for c in [*out.changed, *out.expired] if c.id == ann.cluster)
        f = tracker.features(c, tracker.clusterer.watermark)
        terms = tracker.scorer.explain(f)
        roots.append(f.roots)
        ids.append(ann.cluster)
        offsets.append(sum(terms[k] for k in REASONED_TERMS))
    return np.asarray(roots, dtype=float), ids, np.asarray(offsets)


class TableEmbedder:
    """Vectors looked up by exact text (the PHEME cache); a text not in the table is
    embedded by ``load`` (called once, lazily).  ``path`` carries the identity of the
    embedder the table came from, so models accept it as that embedder."""

    def __init__(self, table: dict[str, np.ndarray], dim: int, identity: str,
                 load: Any = None) -> None:
        self.table = table
        self._dim = dim
        self.path = Path(identity)
        self._load = load
        self._inner: Any = None

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        missing = [i for i, t in enumerate(texts) if t not in self.table]
        for i, t in enumerate(texts):
            if t in self.table:
                out[i] = self.table[t]
        if missing:
            if self._inner is None:
                if self._load is None:
                    raise KeyError(f"{len(missing)} texts not in the embedding table")
                self._inner = self._load()
            vecs = self._inner.embed([texts[i] for i in missing])
            for i, v in zip(missing, vecs, strict=True):
                self.table[texts[i]] = v
                out[i] = v
        return out


def post_texts(items: list[tuple[dict[str, object], bool, str]]) -> list[str]:
    return [str(post.get("text") or "") for post, _, _ in items]


def embed_posts(items: list[tuple[dict[str, object], bool, str]], spec: str,
                cache: Path | None, precision: str = "auto") -> tuple[np.ndarray, TableEmbedder]:
    """Sentence vectors of the posts' texts (the strings the tracker embeds) with
    ``models.embed.load_embedder(spec, precision=precision)``, cached under ``cache`` (keyed
    by the texts, the spec and the numeric format); and an embedder that serves them (and
    embeds anything else)."""
    from models.embed import load_embedder

    texts = post_texts(items)
    resolved = encoder_precision() if precision == "auto" else precision
    # int8 and bf16 vectors of the same text differ (cosine ~0.98): the format is in the key
    key = hashlib.blake2b("\x00".join([spec, resolved, *texts]).encode(
        "utf-8", "surrogatepass"), digest_size=8).hexdigest()
    path = cache / f"pheme-{spec}-{key}.npz" if cache else None
    holder: dict[str, Any] = {}

    def load() -> Any:
        if "e" not in holder:
            holder["e"] = load_embedder(spec, threads=2, precision=resolved)
        return holder["e"]

    if path is not None and path.exists():
        with np.load(path) as npz:
            vecs, identity = npz["x"], str(npz["identity"])
    else:
        emb = load()
        if emb is None:
            raise ValueError(f"embedder {spec!r} gives no vectors")
        t0 = time.perf_counter()
        if getattr(getattr(emb, "inner", emb), "quantized", False):
            # one text per call, as the tracker embeds in `crowdwatch eval rumours` (batch 1):
            # dynamic int8 vectors depend on the batch they come in (cos ~0.99), enough to
            # move roots across the clusterer's cosine threshold; bf16 and fp32 do not
            vecs = np.stack([emb.embed([t])[0] for t in texts]) if texts else np.zeros((0, 1))
        else:
            vecs = emb.embed(texts) if texts else np.zeros((0, 1))
        identity = embedder_identity(emb)
        print(f"embedded {len(texts)} posts with {spec!r} in "  # noqa: T201
              f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, x=vecs, identity=np.asarray(identity))
    table = dict(zip(texts, vecs, strict=True))
    return vecs.astype(np.float64), TableEmbedder(table, vecs.shape[1], identity, load)


def running_mean(probs: np.ndarray, clusters: list[str]) -> np.ndarray:
    """Each post's cluster-mean claim probability over the roots seen so far (as
    :func:`models.rumour.evaluate_rumours` computes it)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    out = np.empty(len(probs))
    for i, (p, c) in enumerate(zip(probs, clusters, strict=True)):
        sums[c] = sums.get(c, 0.0) + float(p)
        counts[c] = counts.get(c, 0) + 1
        out[i] = sums[c] / counts[c]
    return out


def fit_score(z_claim: np.ndarray, roots: np.ndarray, y: np.ndarray, w: np.ndarray,
              l2: float = 0.01, steps: int = 3000,
              offset: np.ndarray | None = None) -> dict[str, float]:
    """Fit ``w_claim``, ``w_roots`` and ``bias`` of the cluster score (Newton steps on the
    weighted log loss; w_roots is then clipped at >= 0 to keep the score monotone).
    ``offset``: the score's other (reasoned) terms per post, fixed."""
    x = np.column_stack([z_claim, np.log(np.maximum(1.0, roots)), np.ones_like(z_claim)])
    off = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=float)
    theta = np.array([1.0, 0.0, 0.0])
    reg = np.array([l2, l2, 0.0])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ theta + off)))
        g = x.T @ (w * (p - y)) / len(y) + 2 * reg * theta
        h = (x * (w * p * (1 - p))[:, None]).T @ x / len(y) + 2 * np.diag(reg) + 1e-9 * np.eye(3)
        step = np.linalg.solve(h, g)
        theta = theta - step
        if np.abs(step).max() < 1e-8:
            break
    del steps
    return {"w_claim": float(theta[0]), "w_roots": float(max(0.0, theta[1])),
            "bias": float(theta[2])}


def print_latency(data: Path) -> int:
    """Detection latency on the RumourEval 2017 train+dev replay (all threads are rumours)."""
    posts, gold = labelled.read_labelled(data / "stance" / "rumoureval2017-traindev", "stance")
    print(f"{'variant (claim model)':26} {'threads':>7} {'flagged':>7} {'at 1st':>6} "  # noqa: T201
          f"{'median':>7} {'p90':>7} {'mean':>7}  (minutes from a thread's first post)")
    variants: list[tuple[str, dict[str, str] | None, Any]] = [
        ("no-stance", None, None), ("oracle-stance", gold, None)]
    try:
        from models.stance import load_default_stance

        model = load_default_stance()

        def stance_fn(texts: Any, parents: Any) -> list[str]:
            return [r.label for r in model.classify(texts, parents)]

        variants.append(("stance-model", None, stance_fn))
    except (ImportError, OSError, ValueError) as exc:
        print(f"(stance model unavailable: {exc})", file=sys.stderr)  # noqa: T201
    # the claim prior: the cue fallback (what detection_latency uses without vectors), and
    # the embedding model with the production embedder attached (what the worker runs)
    claims: list[tuple[str, ClaimClassifier]] = [("fallback", load_default_claim_classifier())]
    try:
        from models.embed import load_embedder

        e5 = load_default_claim_classifier(embedder=load_embedder("default", threads=2))
        if e5.embedder is not None:
            claims.append(("e5", e5))
    except (ImportError, OSError, ValueError) as exc:
        print(f"(embedding claim model unavailable: {exc})", file=sys.stderr)  # noqa: T201

    def fmt(x: float | None) -> str:
        return f"{x:7.1f}" if x is not None else "      -"

    for claim_name, classifier in claims:
        for variant, stances, fn in variants:
            rep = detection_latency(posts, variant=variant, stances=stances, stance_fn=fn,
                                    classifier=classifier)
            name = f"{variant} ({claim_name})"
            print(f"{name:26} {rep.threads:7d} {rep.flagged:7d} "  # noqa: T201
                  f"{rep.flagged_at_first_post:6d} {fmt(rep.median_min)} {fmt(rep.p90_min)} "
                  f"{fmt(rep.mean_min)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--bits", type=int, default=HASH_BITS)
    ap.add_argument("--l2-dense", type=float, default=0.01,
                    help="L2 of the cue weights of the cue-only (fallback) model")
    ap.add_argument("--l2-embed", type=float, default=0.3,
                    help="L2 of the cue + embedding weights of the embedding model")
    ap.add_argument("--l2-hash", type=float, default=0.01)
    ap.add_argument("--min-events", type=int, default=3)
    ap.add_argument("--one-class-weight", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--no-hash", action="store_true", help="no n-grams in the cue model")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--embedder", choices=("default", "hashing", "off"), default="default",
                    help="sentence embedder of the claim model and the production clusterer "
                    "(models.embed.load_embedder); off: the cue + n-gram model alone")
    ap.add_argument("--embed-cache", type=Path, default=DEFAULT_EMBED_CACHE,
                    help="folder for the cached PHEME embeddings")
    ap.add_argument("--embed-precision", choices=PRECISIONS, default="auto",
                    help="the transformer embedder's numeric format (models.hf.encoder_precision; "
                    "the worker's CROWDWATCH_CLUSTER_EMBEDDER_PRECISION)")
    clusterers = ("production", "similarity", "online", "singleton")
    ap.add_argument("--clusterer", choices=clusterers, default="production",
                    help="clusterer the held-out events are scored with: production = "
                    "RumourTracker + OnlineClusterer with --embedder, scored by evaluate_tracker "
                    "(batch 1), as `crowdwatch eval rumours`; similarity = the built-in "
                    "SimilarityClusterer, online = OnlineClusterer MinHash only, singleton = "
                    "every root alone (these three scored by evaluate_rumours)")
    ap.add_argument("--fit-clusterer", choices=clusterers, default="similarity",
                    help="clusterer whose cluster sizes the score coefficients are fitted with "
                    "(default similarity: generalised better leave-one-event-out than fitting "
                    "on the production clusters, see docs/rumour-model.md)")
    ap.add_argument("--claim-model", choices=("embedding", "cue"), default="embedding",
                    help="embedding: cue features + sentence vectors of --embedder (with the "
                    "cue model as fallback); cue: cue features + n-grams only")
    ap.add_argument("--chatter", type=int, default=100,
                    help="everyday posts per language (UMSAB train, 6 languages) added to "
                    "every training set as non-rumours of a pseudo-event (weight as a "
                    "one-class event; the shipped model: 100); 0: none")
    ap.add_argument("--extra", type=Path, nargs="*", default=list(DEFAULT_EXTRA),
                    metavar="BASE",
                    help="labelled root posts (BASE.posts.jsonl + BASE.labels.jsonl, field "
                    "'rumour') added to every training set of the embedding model, each set a "
                    "pseudo-event never held out (weighed like the PHEME events: a one-class "
                    "set as --one-class-weight); default: the Dutch dev set and the Dutch "
                    "everyday chatter; none with a bare --extra")
    ap.add_argument("--test-set", type=Path, nargs="*", default=[DEFAULT_TEST],
                    metavar="BASE", help="labelled root posts the shipped classifier is scored "
                    "on after training (never trained on); default: the Dutch test set")
    ap.add_argument("--latency", action="store_true",
                    help="only replay RumourEval threads with the shipped model and print "
                         "the detection latency (no stance / oracle stance)")
    args = ap.parse_args(argv)
    np.random.seed(args.seed)
    start = time.perf_counter()
    if args.latency:
        return print_latency(args.data)
    items = read_posts(args.data)
    if not items:
        print(f"no PHEME data under {args.data / 'rumour'}", file=sys.stderr)  # noqa: T201
        return 2
    embed_claims = args.embedder != "off" and args.claim_model == "embedding"
    # chatter trains the embedding model only: the cue + n-gram model gives everyday posts
    # a low P(rumour) without it, and with it it flagged 56 instead of 182 of the 214
    # RumourEval rumour threads (--latency)
    chatter = read_chatter(args.data, args.chatter, args.seed) \
        if args.chatter and embed_claims else []
    # like the chatter, the extra sets train the embedding model only
    extras = [read_labelled(base) for base in args.extra] if embed_claims else []
    pheme_rows = np.arange(len(items))
    ds = featurise(items + chatter + [row for rows in extras for row in rows], args.bits)
    at = len(items) + len(chatter)  # PHEME rows first: 0 .. len(items) - 1
    for k, rows in enumerate(extras):  # each extra set is a pseudo-event of its own
        ds.event[at:at + len(rows)] = len(EVENTS) + 1 + k
        at += len(rows)
    embedder: Any = None
    name = ""
    if args.embedder != "off":
        ds.emb, embedder = embed_posts(items, args.embedder, args.embed_cache,
                                       args.embed_precision)
        for more in (chatter, *extras):
            if more:
                extra, _ = embed_posts(more, args.embedder, args.embed_cache,
                                       args.embed_precision)
                ds.emb = np.vstack([ds.emb, extra])
        name = EMBEDDER_NAMES[args.embedder]
    kw_cue: dict[str, Any] = {
        "bits": args.bits, "l2_dense": args.l2_dense, "l2_hash": args.l2_hash,
        "min_events": args.min_events, "one_class_weight": args.one_class_weight,
        "steps": args.steps, "lr": args.lr, "use_hash": not args.no_hash}
    kw = kw_cue if not embed_claims else {
        **kw_cue, "l2_dense": args.l2_embed, "use_hash": False, "use_embed": True,
        "embedder_name": name}
    streams = event_streams(items)
    ids = {e: np.flatnonzero(ds.event == i) for i, e in enumerate(EVENTS)}
    order = {e: {str(r["id"]): k for k, r in enumerate(post for post, _, ev in items
                                                            if ev == e)} for e in EVENTS}
    production = args.clusterer == "production"
    factories: dict[str, Any] = {"similarity": SimilarityClusterer,
                                 "online": OnlineClustererAdapter,
                                 "singleton": SingletonClusterer}
    factory = factories.get(args.clusterer)
    t0 = time.perf_counter()
    clustered = {e: (replay_production(streams[e], embedder)
                     if args.fit_clusterer == "production"
                     else roots_online(streams[e], factories[args.fit_clusterer]))
                 for e in EVENTS if e in streams}
    print(f"clustered in {time.perf_counter() - t0:.0f}s", file=sys.stderr)  # noqa: T201
    stream_pos = {e: [order[e][str(post["id"])] for post, _ in streams[e]] for e in clustered}

    def oof(excluded: set[str], event: str) -> np.ndarray:
        train_idx = np.flatnonzero(~np.isin(ds.event, [EVENTS.index(x) for x in excluded]))
        model = train(ds, train_idx, **kw)
        return predict(model, ds, ids[event])[stream_pos[event]]

    def score_fit(events: list[str], probs: dict[str, np.ndarray]) -> dict[str, float]:
        means = {e: np.clip(running_mean(probs[e], clustered[e][1]), 1e-4, 1 - 1e-4)
                 for e in events}
        z = np.concatenate([np.log(means[e] / (1 - means[e])) for e in events])
        r = np.concatenate([clustered[e][0] for e in events])
        off = np.concatenate([clustered[e][2] for e in events])
        y = np.concatenate([[1.0 if lab else 0.0 for _, lab in streams[e]] for e in events])
        ev = np.concatenate([[EVENTS.index(e)] * len(streams[e]) for e in events])
        pseudo = Dataset(np.zeros((len(y), 1)), np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.zeros(0), y, ev, len(y))
        w = sample_weights(pseudo, np.arange(len(y)), args.one_class_weight)
        return fit_score(z, r, y, w, offset=off)

    def evaluate(event: str, model: ClaimClassifier, params: dict[str, float]) -> Any:
        gold = {str(post["id"]): lab for post, lab in streams[event]}
        settings = RumourSettings(w_claim=params["w_claim"], w_roots=params["w_roots"],
                                  bias=params["bias"])
        if production:
            from models.rumour_tracker import evaluate_tracker

            tracker = production_tracker(embedder, settings, model.with_embedder(embedder))
            return evaluate_tracker([post for post, _ in streams[event]], gold, tracker,
                                    batch=1)
        return evaluate_rumours((post for post, _ in streams[event]), gold,
                                scorer=RumourScorer(settings),
                                classifier=model.with_embedder(embedder),
                                clusterer_factory=factory)

    present = [e for e in EVENTS if e in clustered]
    reports: dict[str, Any] = {}
    table: dict[str, dict[str, float]] = {}
    loeo_probs: dict[str, np.ndarray] = {}
    for event in present:
        others = [e for e in present if e != event]
        train_idx = np.flatnonzero(ds.event != EVENTS.index(event))
        model = train(ds, train_idx, **kw)
        p = predict(model, ds, ids[event])[stream_pos[event]]
        loeo_probs[event] = p
        nested = {f: oof({event, f}, f) for f in others}
        params = score_fit(others, nested)
        y = np.asarray([lab for _, lab in streams[event]], dtype=float)
        mf, rf = macro_f1(y, p)
        row: dict[str, float] = {"n": float(len(y)), "rumour_share": float(y.mean()),
                                 "claim_macro_f1": mf, "claim_rumour_f1": rf,
                                 "claim_flagged": float((p >= 0.5).mean()),
                                 "claim_auc": roc_auc(y, p)}
        if embed_claims:  # the cue-only fallback alone, for comparison
            cue = train(ds, train_idx[train_idx < len(items)], **kw_cue)  # no chatter
            pc = predict(cue, ds, ids[event])[stream_pos[event]]
            row["cue_macro_f1"], _ = macro_f1(y, pc)
            row["cue_auc"] = roc_auc(y, pc)
        report = evaluate(event, model, params)
        reports[event] = report
        row.update({"score_macro_f1": report.online.macro_f1,
                    "score_rumour_f1": report.online.f1["rumour"],
                    "score_precision": report.online.precision["rumour"],
                    "score_recall": report.online.recall["rumour"],
                    "end_macro_f1": report.at_end.macro_f1,
                    **{f"fit_{k}": v for k, v in params.items()}})
        table[event] = row
    print("per held-out event; claim = classifier alone at 0.5 (AUC: ranking); score = "  # noqa: T201
          f"rumour score online (flag when processed; clusterer {args.clusterer}, "
          f"embedder {args.embedder}, claim model {args.claim_model}, score fitted with "
          f"clusterer {args.fit_clusterer}); atEnd = flag at end of stream")
    print(f"{'event':15} {'n':>5} {'rum%':>5} | {'claim':>6} {'AUC':>5} {'flag%':>5} | "  # noqa: T201
          f"{'score':>6} {'P':>5} {'R':>5} {'F1r':>5} | {'atEnd':>6} | w_claim w_roots bias")
    for event, row in table.items():
        print(f"{event:15} {int(row['n']):5d} {row['rumour_share']:5.2f} | "  # noqa: T201
              f"{row['claim_macro_f1']:6.3f} {row['claim_auc']:5.2f} "
              f"{row['claim_flagged']:5.2f} | "
              f"{row['score_macro_f1']:6.3f} {row['score_precision']:5.2f} "
              f"{row['score_recall']:5.2f} {row['score_rumour_f1']:5.2f} | "
              f"{row['end_macro_f1']:6.3f} | {row['fit_w_claim']:.2f} {row['fit_w_roots']:.2f} "
              f"{row['fit_bias']:.2f}")
    keys = ["claim_macro_f1", "claim_auc", "score_macro_f1", "end_macro_f1"]
    keys += ["cue_macro_f1", "cue_auc"] if embed_claims else []
    means = {k: float(np.mean([table[e][k] for e in BOTH_CLASSES if e in table]))
             for k in keys}
    print(f"mean over the two-class events {', '.join(BOTH_CLASSES)}: "  # noqa: T201
          + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    # the same posts pooled: every post weighs the same (a 138-post event swings the mean)
    two_class = [e for e in BOTH_CLASSES if e in reports]
    pooled = {"score_macro_f1": pooled_report([reports[e].online for e in two_class]).macro_f1,
              "end_macro_f1": pooled_report([reports[e].at_end for e in two_class]).macro_f1
              } if two_class else {}
    if pooled:
        print("pooled over their posts: "  # noqa: T201
              + ", ".join(f"{k} {v:.3f}" for k, v in pooled.items()))
    if not args.no_save:
        model = train(ds, np.arange(ds.n), **kw)
        if embed_claims:
            model.fallback = train(ds, pheme_rows, **kw_cue)
        params = score_fit(present, loeo_probs)
        tests = {base.name: claim_report(model, read_labelled(base), args)
                 for base in args.test_set} if embed_claims else {}
        if tests:
            print(f"test sets (classifier alone at 0.5): {json.dumps(tests)}")  # noqa: T201
        model.meta = {"seed": args.seed, "trained_on": present,
                      "extra_sets": [base.name for base in args.extra] if extras else [],
                      "test_sets": tests,
                      "settings": {k: v for k, v in kw.items() if k != "embedder_name"},
                      "fallback_settings": kw_cue if embed_claims else None,
                      "embedder": args.embedder, "clusterer": args.clusterer,
                      # the transformer's numeric format the vectors were computed in
                      "embedder_precision": (
                          None if args.embedder in ("off", "hashing") else
                          encoder_precision() if args.embed_precision == "auto"
                          else args.embed_precision),
                      "fit_clusterer": args.fit_clusterer, "claim_model": args.claim_model,
                      "chatter_per_language": args.chatter if chatter else 0,
                      "score": {k: round(v, 4) for k, v in params.items()},
                      "loeo": {e: {k: round(v, 4) for k, v in row.items()}
                               for e, row in table.items()},
                      "loeo_mean_two_class": {k: round(v, 4) for k, v in means.items()},
                      "loeo_pooled_two_class": {k: round(v, 4) for k, v in pooled.items()},
                      "dense_features": len(DENSE_NAMES)}
        model.save(args.out)
        print(f"wrote {args.out}: score coefficients {model.meta['score']}")  # noqa: T201
    print(f"took {time.perf_counter() - start:.1f}s", file=sys.stderr)  # noqa: T201
    return 0


def claim_report(model: ClaimClassifier, rows: list[tuple[dict[str, object], bool, str]],
                 args: argparse.Namespace) -> dict[str, float]:
    """The classifier alone on labelled root posts, at the decision threshold 0.5 (vectors
    of the same embedder spec and numeric format as the training rows, cached)."""
    vecs, _ = embed_posts(rows, args.embedder, args.embed_cache, args.embed_precision)
    p = np.asarray(model.probs([post for post, _, _ in rows], vectors=vecs))
    y = np.asarray([1.0 if lab else 0.0 for _, lab, _ in rows])
    mf, rf = macro_f1(y, p)
    return {"n": len(rows), "rumour_share": round(float(y.mean()), 4),
            "macro_f1": round(mf, 4), "rumour_f1": round(rf, 4),
            "auc": round(roc_auc(y, p), 4), "flagged": round(float((p >= 0.5).mean()), 4)}


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); 0.5 when one class is absent."""
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return 0.5
    values = np.concatenate([pos, neg])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):  # average ranks of ties
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


if __name__ == "__main__":
    raise SystemExit(main())
