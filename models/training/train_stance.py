"""Train crowdwatch's default stance model (support / deny / query / comment).

    python -m models.training.train_stance --seed 13 [--out DIR] [--data /work/shared/data]

Data: ``stance/rumoureval2017-traindev.{posts,labels}.jsonl`` (English PHEME reply threads).
Every thread is assigned to its PHEME event (from the source post's hashtags/keywords, then
its date) and everything is validated **leave-one-event-out**: a model trained on the other
events predicts the held-out event; threads never straddle a split.  The ``--extra`` sets
(default: the 80 Dutch replies of ``models/training/data/nl-stance-dev``) join every
training set and are never held out; the ``--test-set`` files (default: the Dutch
``nl-stance-test``) only score the shipped model.  The cue block's L2
(from ``L2_DENSE_GRID``) and the per-class decision offsets are chosen *nested*: for each
held-out event they are picked on inner leave-one-event-out predictions of the remaining
events only, so the reported figures never saw the held-out event.  The shipped model is
trained on all events, with the L2 and offsets picked on the outer out-of-fold predictions.

Default: the cue block only (``--hash-bits 0``), standardised.  The earlier n-gram model
(stance-cues-1 era) is ``--hash-bits 18 --l2-dense 0.001 --no-standardise --steps 60``.

Model: see :mod:`models.stance`.  Optimiser: full-batch L-BFGS (torch on CPU, one thread,
float64) on the class-weighted multinomial cross-entropy with L2 — the same features, data
and ``--seed`` give the same weights (nothing is sampled; the seed is recorded and seeds
torch for good measure).  See docs/stance-model.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.stance import (
    DENSE,
    STANCES,
    FeatureConfig,
    LinearStanceClassifier,
    evaluate_stance,
    featurize,
    parent_texts,
)
from models.training import labelled

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "models" / "weights" / "stance-default"
# Dutch replies written for the project (docs/stance-model.md, "Dutch"): the dev set joins
# every training set and is never held out; the test set is only ever scored
NL_DATA = ROOT / "models" / "training" / "data"
DEFAULT_EXTRA = NL_DATA / "nl-stance-dev"
DEFAULT_TEST = NL_DATA / "nl-stance-test"
EXTRA_EVENT = "extra:"  # event name prefix of rows that are always trained on
K = len(STANCES)
LAB = {s: i for i, s in enumerate(STANCES)}

# keyword → event, checked in order on the folded source text; then date ranges
_EVENT_WORDS: tuple[tuple[str, str], ...] = (
    ("germanwings", r"germanwings|4u9525|lubitz|alps crash"),
    ("ottawashooting", r"ottawa|cirillo|parliament hill|zehaf"),
    ("ferguson", r"ferguson|mike ?brown|michael ?brown|darren wilson|henry ?davis"),
    ("charliehebdo", r"charlie ?hebdo|kouachi|jesuischarlie|paris|france|french|kosher"),
    ("sydneysiege", r"sydney|lindt|martin ?place|monis|abbott"),
    ("putinmissing", r"putin|kremlin|kabayeva"),
    ("prince-toronto", r"prince|massey"),
    ("ebola-essien", r"ebola|essien"),
    ("gurlitt", r"gurlitt"),
)
_EVENT_DATES: tuple[tuple[str, str, str], ...] = (
    ("2014-08-01", "2014-09-30", "ferguson"),
    ("2014-10-01", "2014-10-20", "ebola-essien"),
    ("2014-10-21", "2014-10-31", "ottawashooting"),
    ("2014-11-01", "2014-11-30", "prince-toronto"),
    ("2014-12-01", "2014-12-31", "sydneysiege"),
    ("2015-01-01", "2015-01-31", "charliehebdo"),
    ("2015-03-01", "2015-03-20", "putinmissing"),
    ("2015-03-21", "2015-04-30", "germanwings"),
)


def event_of(source: dict[str, Any]) -> str:
    text = str(source.get("text") or "").lower()
    for name, pattern in _EVENT_WORDS:
        if re.search(pattern, text):
            return name
    day = str(source.get("created_at") or "")[:10]
    for lo, hi, name in _EVENT_DATES:
        if lo <= day <= hi:
            return name
    return "unknown"


@dataclass
class Dataset:
    ids: list[str]
    texts: list[str]
    parents: list[str | None]
    y: np.ndarray
    events: list[str]
    idx: list[np.ndarray]
    dense: np.ndarray

    @property
    def fixed(self) -> np.ndarray:
        """Rows that are always trained on and never held out (``--extra`` sets)."""
        return np.asarray([e.startswith(EXTRA_EVENT) for e in self.events], dtype=bool)


def load_rumoureval(data: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    return load_labelled(data / "stance" / "rumoureval2017-traindev")


def load_labelled(base: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``BASE.posts.jsonl`` (canonical posts) and the ``stance`` of ``BASE.labels.jsonl``."""
    posts, gold = labelled.read_labelled(base, "stance")
    return posts, {k: str(v) for k, v in gold.items()}


def build_extra(base: Path, cfg: FeatureConfig) -> Dataset:
    """A labelled set that joins every training set (event ``extra:NAME``)."""
    posts, gold = load_labelled(base)
    ds = build(posts, gold, cfg)
    ds.events = [EXTRA_EVENT + base.name] * len(ds.y)
    return ds


def concat(a: Dataset, b: Dataset) -> Dataset:
    return Dataset(a.ids + b.ids, a.texts + b.texts, a.parents + b.parents,
                   np.concatenate([a.y, b.y]), a.events + b.events, a.idx + b.idx,
                   np.vstack([a.dense, b.dense]))


def build(posts: list[dict[str, Any]], gold: dict[str, str], cfg: FeatureConfig) -> Dataset:
    by_id = {str(p["id"]): p for p in posts}

    def root_of(p: dict[str, Any]) -> dict[str, Any]:
        seen = set()
        while p.get("reply_to") and str(p["reply_to"]) in by_id and p["id"] not in seen:
            seen.add(p["id"])
            p = by_id[str(p["reply_to"])]
        return p

    parents = parent_texts(posts)
    ds = Dataset([], [], [], np.empty(0, dtype=np.int64), [], [], np.empty((0, len(DENSE))))
    ys, dens = [], []
    for p, parent in zip(posts, parents, strict=True):
        pid = str(p["id"])
        if pid not in gold:
            continue
        idx, d = featurize(str(p.get("text") or ""), parent, cfg)
        ds.ids.append(pid)
        ds.texts.append(str(p.get("text") or ""))
        ds.parents.append(parent)
        ds.events.append(event_of(root_of(p)))
        ds.idx.append(idx)
        dens.append(d)
        ys.append(LAB[gold[pid]])
    ds.y = np.asarray(ys, dtype=np.int64)
    ds.dense = np.asarray(dens, dtype=np.float32)
    return ds


@dataclass(frozen=True)
class HParams:
    l2_sparse: float = 1e-3
    l2_dense: float = 0.1
    class_power: float = 1.0  # class weight = (n / count) ** power
    lexical_dropout_copies: float = 0.5  # weight of the cue-only copy of every post
    steps: int = 100
    standardise: bool = True  # fit the cue block on z-scores (folded back into the weights)


# the cue block's L2, picked by leave-one-event-out (nested in the report)
L2_DENSE_GRID: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)


def _sparse_design(idx: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.asarray([len(i) for i in idx], dtype=np.int64)
    rows = np.repeat(np.arange(len(idx)), counts)
    cols = np.concatenate(idx) if idx else np.empty(0, dtype=np.int64)
    scale = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    return rows, cols, scale[rows].astype(np.float64)


def train(ds: Dataset, sel: np.ndarray, cfg: FeatureConfig, hp: HParams,
          seed: int) -> LinearStanceClassifier:
    """Fit on the rows ``sel`` of ``ds`` (plus their cue-only copies when there is a
    hashed lexical block).  With ``hp.standardise`` the cue block is fitted on z-scores of
    the training rows (the L2 then acts on standardised weights); the scaling is folded back
    into the returned weights, so the runtime model needs no extra step."""
    idx = [ds.idx[i] for i in sel]
    dense = ds.dense[sel].astype(np.float64)
    mu = np.zeros(dense.shape[1])
    sd = np.ones(dense.shape[1])
    if hp.standardise:
        mu = dense.mean(axis=0)
        sd = dense.std(axis=0)
        sd[sd < 1e-6] = 1.0
        mu[0], sd[0] = 0.0, 1.0  # the bias column stays 1
        dense = (dense - mu) / sd
    y = ds.y[sel]
    n = len(sel)
    counts = np.bincount(y, minlength=K).astype(np.float64)
    cw = (n / np.maximum(counts, 1.0)) ** hp.class_power
    sw = cw[y]
    lexical = cfg.dim > 0
    if lexical and hp.lexical_dropout_copies > 0:
        idx = idx + [np.empty(0, dtype=np.int64)] * n
        dense = np.vstack([dense, dense])
        y = np.concatenate([y, y])
        sw = np.concatenate([sw, sw * hp.lexical_dropout_copies])
    sw = sw / sw.sum()
    rows, cols_full, vals = _sparse_design(idx)
    used, cols = np.unique(cols_full, return_inverse=True)  # train only the seen buckets
    nu = len(used) if lexical else 0
    m = len(y)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x_sp: torch.Tensor | None = None
    if nu:
        crow = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=m))))
        # rows ascend and each row's buckets ascend (np.unique), as CSR wants
        x_sp = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols),
                                       torch.from_numpy(vals), (m, nu), dtype=torch.float64,
                                       check_invariants=False)
    x_dn = torch.from_numpy(dense)
    yt = torch.from_numpy(y)
    swt = torch.from_numpy(sw)
    ws = torch.zeros((nu, K), dtype=torch.float64, requires_grad=True)
    wd = torch.zeros((len(DENSE), K), dtype=torch.float64, requires_grad=True)
    reg_d = torch.full((len(DENSE), 1), hp.l2_dense, dtype=torch.float64)
    reg_d[0] = 0.0  # no penalty on the bias
    opt = torch.optim.LBFGS([ws, wd], lr=1.0, max_iter=hp.steps, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = x_dn @ wd
        if x_sp is not None:
            z = z + torch.sparse.mm(x_sp, ws)
        nll = torch.nn.functional.cross_entropy(z, yt, reduction="none")
        loss = (nll * swt).sum() + 0.5 * hp.l2_sparse * (ws * ws).sum() \
            + 0.5 * (reg_d * wd * wd).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_full = np.zeros((max(cfg.dim, 0), K), dtype=np.float32)
    if nu:
        w_full[used] = ws.detach().numpy()  # buckets never seen in training stay exactly zero
    wz = wd.detach().numpy()
    wd_np = wz / sd[:, None]  # z-scores -> raw features: x @ (w / sd) - (mu / sd) @ w
    wd_np[0] -= (mu / sd) @ wz
    return LinearStanceClassifier(w_full, wd_np.astype(np.float32),
                                  np.zeros(K, dtype=np.float32), cfg)


def scores(model: LinearStanceClassifier, ds: Dataset, sel: np.ndarray) -> np.ndarray:
    """Log-probabilities for rows ``sel`` (from the precomputed features)."""
    z = ds.dense[sel] @ model.w_dense
    for r, i in enumerate(sel):
        ix = ds.idx[i]
        if len(ix):
            z[r] += model.w_sparse[ix].sum(axis=0) / np.sqrt(len(ix))
    z = z - z.max(axis=1, keepdims=True)
    out: np.ndarray = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return out


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    f1s = []
    for k in range(K):
        tp = float(np.sum((pred == k) & (y == k)))
        fp = float(np.sum((pred == k) & (y != k)))
        fn = float(np.sum((pred != k) & (y == k)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s))


def per_class_f1(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    out = {}
    for k, s in enumerate(STANCES):
        tp = float(np.sum((pred == k) & (y == k)))
        fp = float(np.sum((pred == k) & (y != k)))
        fn = float(np.sum((pred != k) & (y == k)))
        out[s] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out


def tune_offsets(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-class offsets (comment fixed at 0) maximising macro-F1, coordinate ascent on a
    grid; ties keep the offset closest to 0."""
    off = np.zeros(K)
    grid = np.round(np.arange(-2.0, 2.0001, 0.1), 2)
    best = macro_f1(y, (logp + off).argmax(1))
    for _ in range(3):
        changed = False
        for k in range(K):
            if STANCES[k] == "comment":
                continue
            cand = off.copy()
            for v in sorted(grid, key=abs):
                cand[k] = v
                f = macro_f1(y, (logp + cand).argmax(1))
                if f > best + 1e-9:
                    best, off, changed = f, cand.copy(), True
        if not changed:
            break
    return off


def oof_logp(ds: Dataset, sel: np.ndarray, cfg: FeatureConfig, hp: HParams,
             seed: int) -> np.ndarray:
    """Leave-one-event-out log-probabilities for the rows ``sel`` that can be held out
    (``--extra`` rows are always in the training side and get no prediction)."""
    fixed = ds.fixed[sel]
    events = np.asarray(ds.events)[sel]
    held = sel[~fixed]
    out = np.zeros((len(held), K))
    for ev in sorted(set(events[~fixed])):
        test = events == ev
        model = train(ds, sel[~test], cfg, hp, seed)
        out[events[~fixed] == ev] = scores(model, ds, sel[test])
    return out


def _select(ds: Dataset, rows: np.ndarray, cfg: FeatureConfig, grid: list[HParams],
            seed: int) -> tuple[int, np.ndarray, float, np.ndarray]:
    """Pick the hyper-parameters from ``grid`` by leave-one-event-out over the events of
    ``rows`` only: (index into ``grid``, its offsets tuned on those predictions, the
    macro-F1 they reach, the predictions).  Ties keep the earlier grid entry."""
    best: tuple[int, np.ndarray, float, np.ndarray] | None = None
    y = ds.y[rows[~ds.fixed[rows]]]
    for g, hp in enumerate(grid):
        lp = oof_logp(ds, rows, cfg, hp, seed)
        off = tune_offsets(lp, y)
        f = macro_f1(y, (lp + off).argmax(1))
        if best is None or f > best[2] + 1e-9:
            best = (g, off, f, lp)
    if best is None:
        raise ValueError("empty hyper-parameter grid")
    return best


def loeo_report(ds: Dataset, cfg: FeatureConfig, hp: HParams | list[HParams], seed: int,
                nested: bool = True) -> dict[str, Any]:
    """Leave-one-event-out report.  With ``nested``, each held-out event gets the grid
    entry and the offsets chosen on inner leave-one-event-out predictions of the other
    events only (the honest figure).  Without it, the first grid entry and no offsets."""
    grid = hp if isinstance(hp, list) else [hp]
    allrows = np.arange(len(ds.y))
    events = np.asarray(ds.events)
    logp = np.zeros((len(ds.y), K))
    pred_nested = np.zeros(len(ds.y), dtype=np.int64)
    per_event: dict[str, Any] = {}
    for ev in sorted(set(events[~ds.fixed])):
        test = events == ev
        train_rows = allrows[~test]
        if nested:
            g, off, _, _ = _select(ds, train_rows, cfg, grid, seed)
        else:
            g, off = 0, np.zeros(K)
        model = train(ds, train_rows, cfg, grid[g], seed)
        logp[test] = scores(model, ds, allrows[test])
        pred_nested[test] = (logp[test] + off).argmax(1)
        y = ds.y[test]
        per_event[ev] = {
            "n": int(test.sum()),
            "labels": dict(Counter(STANCES[k] for k in y)),
            "macro_f1_raw": round(macro_f1(y, logp[test].argmax(1)), 4),
            "macro_f1": round(macro_f1(y, pred_nested[test]), 4),
            "offsets": [round(float(v), 2) for v in off],
            "l2_dense": grid[g].l2_dense,
        }
    # the figures are over the rows that were held out (not the --extra rows)
    held = ~ds.fixed
    y, logp, pred_nested = ds.y[held], logp[held], pred_nested[held]
    # the shipped configuration: grid entry and offsets chosen on all events' LOEO output
    g_all, pooled_off, pooled_f1, pooled_logp = _select(ds, allrows, cfg, grid, seed)
    return {
        "events": per_event,
        "pooled_macro_f1_argmax": round(macro_f1(y, logp.argmax(1)), 4),
        "pooled_macro_f1_nested_offsets": round(macro_f1(y, pred_nested), 4),
        "per_class_f1_nested_offsets": {k: round(v, 4)
                                        for k, v in per_class_f1(y, pred_nested).items()},
        "per_class_f1_argmax": {k: round(v, 4) for k, v in per_class_f1(y, logp.argmax(1)).items()},
        "mean_event_macro_f1_nested": round(float(np.mean(
            [v["macro_f1"] for v in per_event.values()])), 4),
        "accuracy_nested": round(float(np.mean(pred_nested == y)), 4),
        "selected_l2_dense": grid[g_all].l2_dense,
        "pooled_offsets": [round(float(v), 2) for v in pooled_off],
        "pooled_macro_f1_pooled_offsets_optimistic": round(pooled_f1, 4),
        "_selected": grid[g_all],
        "_logp": pooled_logp,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--hash-bits", type=int, default=0,
                    help="hashed n-gram block of 2^bits buckets; 0 (default) = cue block only")
    ap.add_argument("--no-char-ngrams", action="store_true")
    ap.add_argument("--no-parent-words", action="store_true")
    ap.add_argument("--l2", type=float, default=HParams.l2_sparse, help="L2 of the n-grams")
    ap.add_argument("--l2-dense", type=str, default=",".join(map(str, L2_DENSE_GRID)),
                    help="comma-separated L2 grid of the cue block (picked by LOEO)")
    ap.add_argument("--no-standardise", action="store_true",
                    help="fit the cue block on raw values (the stance-cues-1 model did)")
    ap.add_argument("--class-power", type=float, default=HParams.class_power)
    ap.add_argument("--cue-copies", type=float, default=HParams.lexical_dropout_copies)
    ap.add_argument("--steps", type=int, default=HParams.steps)
    ap.add_argument("--no-nested", action="store_true", help="skip nested offset tuning")
    ap.add_argument("--no-write", action="store_true", help="report only")
    ap.add_argument("--extra", type=Path, nargs="*", default=[DEFAULT_EXTRA],
                    metavar="BASE",
                    help="labelled sets (BASE.posts.jsonl + BASE.labels.jsonl) that join every "
                         "training set and are never held out; default: the Dutch dev set; "
                         "none with a bare --extra")
    ap.add_argument("--test-set", type=Path, nargs="*", default=[DEFAULT_TEST],
                    metavar="BASE",
                    help="labelled sets the shipped model is scored on after training "
                         "(never trained on); default: the Dutch test set")
    args = ap.parse_args(argv)

    t0 = time.time()
    bits = args.hash_bits
    cfg = FeatureConfig(1 << bits if bits > 0 else 0, bits > 0 and not args.no_char_ngrams,
                        bits > 0 and not args.no_parent_words)
    grid = [HParams(args.l2, float(v), args.class_power, args.cue_copies, args.steps,
                    not args.no_standardise) for v in args.l2_dense.split(",") if v.strip()]
    posts, gold = load_rumoureval(args.data)
    ds = build(posts, gold, cfg)
    for base in args.extra:
        ds = concat(ds, build_extra(base, cfg))
    ev_counts = Counter(ds.events)
    print(f"posts {len(ds.y)}  labels {dict(Counter(STANCES[k] for k in ds.y))}")  # noqa: T201
    print(f"events {dict(sorted(ev_counts.items()))}")  # noqa: T201
    rep = loeo_report(ds, cfg, grid, args.seed, nested=not args.no_nested)
    rep.pop("_logp")
    hp: HParams = rep.pop("_selected")
    print(json.dumps(rep, indent=2))  # noqa: T201

    model = train(ds, np.arange(len(ds.y)), cfg, hp, args.seed)
    model.offsets = np.asarray(rep["pooled_offsets"], dtype=np.float32)
    tests: dict[str, Any] = {}
    for base in args.test_set:
        tposts, tgold = load_labelled(base)
        report = evaluate_stance(tposts, tgold, model)
        tests[base.name] = {"n": report.n, "macro_f1": round(report.macro_f1, 4),
                            "accuracy": round(report.accuracy, 4),
                            "per_class_f1": {k: round(v, 4) for k, v in report.f1.items()}}
    if tests:
        print(json.dumps({"test_sets": tests}, indent=2))  # noqa: T201
    model.meta = {
        "trained_on": "rumoureval2017-traindev (all events)"
                      + "".join(f" + {b.name}" for b in args.extra),
        "test_sets": tests, "seed": args.seed,
        "hparams": hp.__dict__, "l2_dense_grid": [h.l2_dense for h in grid],
        "loeo": {k: rep[k] for k in ("pooled_macro_f1_nested_offsets",
                                     "per_class_f1_nested_offsets",
                                     "mean_event_macro_f1_nested", "pooled_macro_f1_argmax")},
        "loeo_per_event_macro_f1": {k: v["macro_f1"] for k, v in rep["events"].items()},
    }
    if not args.no_write:
        model.save(args.out)
        size = sum(f.stat().st_size for f in Path(args.out).iterdir())
        print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {time.time() - t0:.0f}s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
