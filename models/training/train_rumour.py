"""Train crowdwatch's rumour claim classifier, validated leave-one-event-out.

    python -m models.training.train_rumour --seed 13 [--out models/weights/rumour-default]

Data: the shared PHEME source posts ``rumour/pheme-{event}-{rumours,non-rumours}`` (the
``retweets`` label is never used).  For every event, a model is trained on all *other*
events and tested on it; the table gives per-event macro-F1 over rumour / non-rumour at
the fixed decision threshold 0.5 (no threshold tuning on the test event), the mean over
the events that have both classes (ferguson, gurlitt, putinmissing, sydneysiege) and,
for the lopsided ones, the figures all the same.  The shipped model is then trained on
all events with the same settings.

Training: full-batch logistic regression in numpy (Adam on the L2-regularised,
sample-weighted log loss).  Sample weights make the two classes weigh the same within
every event that has both, and give one-class events (charliehebdo, ebola-essien,
prince-toronto, whose identity would otherwise leak into the label) a reduced total
weight; hashed n-gram buckets occurring in fewer than ``--min-events`` training events
are masked out (event-specific words such as "ferguson" never get a weight).
Deterministic: no randomness is used beyond the fixed seed, which only orders nothing
(full batch); it is kept for the command line's contract.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import classification_report
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
    evaluate_rumours,
    hashed_ngrams,
    post_time,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
EVENTS = ("charliehebdo", "ebola-essien", "ferguson", "gurlitt", "prince-toronto",
          "putinmissing", "sydneysiege")
BOTH_CLASSES = ("ferguson", "gurlitt", "putinmissing", "sydneysiege")
LABELS = ("rumour", "non-rumour")


@dataclass
class Dataset:
    dense: np.ndarray          # n x d
    rows: np.ndarray           # CSR-ish coordinates of the hashed n-grams
    cols: np.ndarray
    vals: np.ndarray
    y: np.ndarray              # 1 = rumour
    event: np.ndarray          # event index
    n: int


def read_posts(data: Path) -> list[tuple[dict[str, object], bool, str]]:
    out: list[tuple[dict[str, object], bool, str]] = []
    folder = data / "rumour"
    for event in EVENTS:
        for kind in ("rumours", "non-rumours"):
            posts = folder / f"pheme-{event}-{kind}.posts.jsonl"
            labels = folder / f"pheme-{event}-{kind}.labels.jsonl"
            if not posts.exists():
                continue
            gold = {}
            with labels.open(encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    gold[row["id"]] = bool(row["rumour"])
            with posts.open(encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    if row["id"] in gold:
                        out.append((row, gold[row["id"]], event))
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
        ev.append(EVENTS.index(event))
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
    for c in (0, 1):
        w[y == c] *= 0.5 * w.sum() / w[y == c].sum()
    return w / w.mean()


def train(ds: Dataset, idx: np.ndarray, *, bits: int, l2_dense: float, l2_hash: float,
          min_events: int, one_class_weight: float, steps: int, lr: float,
          use_hash: bool = True) -> ClaimClassifier:
    x = ds.dense[idx]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = (x - mean) / scale
    y = ds.y[idx]
    sw = sample_weights(ds, idx, one_class_weight)
    n, d = xs.shape
    dim = 1 << bits
    # sparse part restricted to the training rows, renumbered 0..n-1
    pos = np.full(ds.n, -1)
    pos[idx] = np.arange(n)
    keep = pos[ds.rows] >= 0
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
    return ClaimClassifier(mean, scale, wd, wh, float(b[0]), bits)


def predict(model: ClaimClassifier, ds: Dataset, idx: np.ndarray) -> np.ndarray:
    xs = (ds.dense[idx] - model.mean) / model.scale
    pos = np.full(ds.n, -1)
    pos[idx] = np.arange(len(idx))
    keep = pos[ds.rows] >= 0
    r, c, v = pos[ds.rows[keep]], ds.cols[keep], ds.vals[keep]
    z = xs @ model.w_dense + model.bias + np.bincount(r, weights=v * model.w_hash[c],
                                                      minlength=len(idx))
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


def roots_online(stream: list[tuple[dict[str, object], bool]],
                 factory: Any = SimilarityClusterer) -> tuple[np.ndarray, list[str]]:
    """The roots count of each post's cluster when it is processed, and the cluster ids."""
    clusterer = factory()
    out, ids = [], []
    for post in stream:
        now = post_time(post[0]) or 0.0
        a = clusterer.add(post[0], now)
        out.append(clusterer.features(str(a.cluster_id), now).roots)
        ids.append(str(a.cluster_id))
    return np.asarray(out, dtype=float), ids


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
              l2: float = 0.01, steps: int = 3000) -> dict[str, float]:
    """Fit ``w_claim``, ``w_roots`` and ``bias`` of the cluster score (Newton steps on the
    weighted log loss; w_roots is then clipped at >= 0 to keep the score monotone)."""
    x = np.column_stack([z_claim, np.log(np.maximum(1.0, roots)), np.ones_like(z_claim)])
    theta = np.array([1.0, 0.0, 0.0])
    reg = np.array([l2, l2, 0.0])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
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
    folder = data / "stance"
    with (folder / "rumoureval2017-traindev.posts.jsonl").open(encoding="utf-8") as fh:
        posts = [json.loads(line) for line in fh]
    with (folder / "rumoureval2017-traindev.labels.jsonl").open(encoding="utf-8") as fh:
        gold = {(r := json.loads(line))["id"]: r["stance"] for line in fh}
    print(f"{'variant':16} {'threads':>7} {'flagged':>7} {'at 1st':>6} "  # noqa: T201
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
    for variant, stances, fn in variants:
        rep = detection_latency(posts, variant=variant, stances=stances, stance_fn=fn)
        def fmt(x: float | None) -> str:
            return f"{x:7.1f}" if x is not None else "      -"
        print(f"{variant:16} {rep.threads:7d} {rep.flagged:7d} "  # noqa: T201
              f"{rep.flagged_at_first_post:6d} {fmt(rep.median_min)} {fmt(rep.p90_min)} "
              f"{fmt(rep.mean_min)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--bits", type=int, default=HASH_BITS)
    ap.add_argument("--l2-dense", type=float, default=0.01)
    ap.add_argument("--l2-hash", type=float, default=0.01)
    ap.add_argument("--min-events", type=int, default=3)
    ap.add_argument("--one-class-weight", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--no-hash", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--clusterer", choices=("similarity", "online", "singleton"),
                    default="similarity",
                    help="clusterer whose cluster sizes the score is fitted and evaluated with: "
                    "the built-in SimilarityClusterer, models.clusters.OnlineClusterer "
                    "(MinHash only) or every root alone")
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
    ds = featurise(items, args.bits)
    kw: dict[str, Any] = {"bits": args.bits, "l2_dense": args.l2_dense, "l2_hash": args.l2_hash,
          "min_events": args.min_events, "one_class_weight": args.one_class_weight,
          "steps": args.steps, "lr": args.lr, "use_hash": not args.no_hash}
    streams = event_streams(items)
    # out-of-event probabilities: oof[e][f] = P for event f's posts from a model trained
    # without e and f (nested, for fitting the score on events other than e); oof[None][f]
    # from a model trained without f
    ids = {e: np.flatnonzero(ds.event == i) for i, e in enumerate(EVENTS)}
    order = {e: {str(r["id"]): k for k, r in enumerate(post for post, _, ev in items
                                                            if ev == e)} for e in EVENTS}
    factory: Any = {"similarity": SimilarityClusterer, "online": OnlineClustererAdapter,
                    "singleton": SingletonClusterer}[args.clusterer]
    clustered = {e: roots_online(streams[e], factory) for e in EVENTS if e in streams}
    roots = {e: r for e, (r, _) in clustered.items()}
    stream_pos = {e: [order[e][str(post["id"])] for post, _ in streams[e]] for e in roots}

    def oof(excluded: set[str], event: str) -> np.ndarray:
        train_idx = np.flatnonzero(~np.isin(ds.event, [EVENTS.index(x) for x in excluded]))
        model = train(ds, train_idx, **kw)
        return predict(model, ds, ids[event])[stream_pos[event]]

    def score_fit(events: list[str], probs: dict[str, np.ndarray]) -> dict[str, float]:
        means = {e: np.clip(running_mean(probs[e], clustered[e][1]), 1e-4, 1 - 1e-4)
                 for e in events}
        z = np.concatenate([np.log(means[e] / (1 - means[e])) for e in events])
        r = np.concatenate([roots[e] for e in events])
        y = np.concatenate([[1.0 if lab else 0.0 for _, lab in streams[e]] for e in events])
        ev = np.concatenate([[EVENTS.index(e)] * len(streams[e]) for e in events])
        pseudo = Dataset(np.zeros((len(y), 1)), np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.zeros(0), y, ev, len(y))
        w = sample_weights(pseudo, np.arange(len(y)), args.one_class_weight)
        return fit_score(z, r, y, w)

    present = [e for e in EVENTS if e in roots]
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
        report = evaluate_rumours((post for post, _ in streams[event]),
                                  {str(post["id"]): lab for post, lab in streams[event]},
                                  scorer=RumourScorer(RumourSettings(
                                      w_claim=params["w_claim"], w_roots=params["w_roots"],
                                      bias=params["bias"])),
                                  classifier=model, clusterer_factory=factory)
        table[event] = {"n": float(len(y)), "rumour_share": float(y.mean()),
                        "claim_macro_f1": mf, "claim_rumour_f1": rf,
                        "claim_flagged": float((p >= 0.5).mean()),
                        "score_macro_f1": report.online.macro_f1,
                        "score_rumour_f1": report.online.f1["rumour"],
                        "score_precision": report.online.precision["rumour"],
                        "score_recall": report.online.recall["rumour"],
                        "end_macro_f1": report.at_end.macro_f1,
                        **{f"fit_{k}": v for k, v in params.items()}}
    header = (f"{'event':15} {'n':>5} {'rum%':>5} | {'claim':>6} {'flag%':>5} | "
              f"{'score':>6} {'P':>5} {'R':>5} {'F1r':>5} | {'atEnd':>6} | fitted w_roots")
    print("per held-out event; claim = classifier alone at 0.5; score = rumour score "  # noqa: T201
          f"online (flag when processed, clusterer {args.clusterer}); "
          "atEnd = flag at end of stream")
    print(header)  # noqa: T201
    for event, row in table.items():
        print(f"{event:15} {int(row['n']):5d} {row['rumour_share']:5.2f} | "  # noqa: T201
              f"{row['claim_macro_f1']:6.3f} {row['claim_flagged']:5.2f} | "
              f"{row['score_macro_f1']:6.3f} {row['score_precision']:5.2f} "
              f"{row['score_recall']:5.2f} {row['score_rumour_f1']:5.2f} | "
              f"{row['end_macro_f1']:6.3f} | {row['fit_w_roots']:.2f}")
    means = {k: float(np.mean([table[e][k] for e in BOTH_CLASSES if e in table]))
             for k in ("claim_macro_f1", "score_macro_f1", "end_macro_f1")}
    print(f"mean macro-F1 over the two-class events {', '.join(BOTH_CLASSES)}: "  # noqa: T201
          f"claim {means['claim_macro_f1']:.3f}, score online {means['score_macro_f1']:.3f}, "
          f"score at end {means['end_macro_f1']:.3f}")
    if not args.no_save:
        model = train(ds, np.arange(ds.n), **kw)
        params = score_fit(present, loeo_probs)
        model.meta = {"seed": args.seed, "trained_on": present, "settings": kw,
                      "score": {k: round(v, 4) for k, v in params.items()},
                      "loeo": {e: {k: round(v, 4) for k, v in row.items()}
                               for e, row in table.items()},
                      "loeo_mean_two_class": {k: round(v, 4) for k, v in means.items()},
                      "dense_features": len(DENSE_NAMES)}
        model.save(args.out)
        print(f"wrote {args.out}: score coefficients {model.meta['score']}")  # noqa: T201
    print(f"took {time.perf_counter() - start:.1f}s", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
