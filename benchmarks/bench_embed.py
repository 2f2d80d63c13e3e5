"""The claim clusterer's sentence embedder in each numeric format, against fp32 in the same run.

    python benchmarks/bench_embed.py [--model default|PATH] [--texts 1024] [--batch 64]

Texts: distinct root texts of generated Dutch + English festival traffic
(``models.generate``, scenario rumour-rebuttal) interleaved with real multilingual tweets
from ../shared/data/sentiment when that folder is there.

For fp32 (the baseline), dynamic int8 and bf16 it prints:
- texts/s at ``--batch`` (best of ``--repeats`` interleaved runs) and the ratio to fp32;
- cosine to the fp32 vector of the same text (min / mean);
- batch dependence: the cosine between a text's vector embedded in batches of ``--batch``
  and in batches of ``--other-batch`` (other neighbours, other padding), min / mean;
- what the clusterer sees: of all text pairs, those whose verdict at the clusterer's
  semantic threshold (``ClusterSettings().semantic_cosine``, 0.88) differs from fp32's, and
  those whose verdict differs between the two batchings of the same format.

``auto`` (``models.hf.encoder_precision``) is what the worker runs here; the line about the
machine says whether int8 is exact and bf16 in hardware on this CPU (elsewhere bf16 is
emulated and slow, and int8 may saturate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.machine import describe  # noqa: E402
from models.clusters import ClusterSettings  # noqa: E402
from models.embed import TransformerEmbedder, embed_key  # noqa: E402
from models.generate import generate  # noqa: E402
from models.hf import bf16_is_fast, encoder_precision, int8_is_exact  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "sentiment"
FORMATS = ("fp32", "int8", "bf16")


def texts(n: int) -> list[str]:
    """``n`` distinct texts (by :func:`models.embed.embed_key`): generated roots and real tweets."""
    traffic = generate("rumour-rebuttal", seed=11, n_posts=max(4 * n, 4000)).posts
    roots = [p["text"] for p in traffic
             if not (p.get("repost_of") or p.get("reply_to")) and p["text"]]
    real = [json.loads(line)["text"] for f in sorted(SHARED.glob("umsab-*-val.posts.jsonl"))
            for line in f.read_text("utf-8").splitlines() if line]
    out: dict[str, str] = {}
    for text in (t for pair in zip(roots, real, strict=False) for t in pair) if real else roots:
        out.setdefault(embed_key(text), text)
        if len(out) == n:
            break
    return list(out.values())


def embed_in(embedder: TransformerEmbedder, items: Sequence[str], batch: int) -> np.ndarray:
    """Vectors of ``items`` embedded ``batch`` at a time, in the order given (the embedder
    sorts each call by length, so neighbours and padding come from the same call)."""
    return np.concatenate([embedder.embed(items[i:i + batch])
                           for i in range(0, len(items), batch)])


def joined(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Upper-triangle mask of pairs at or above the cosine threshold."""
    sims = vectors @ vectors.T
    return np.triu(sims >= threshold, k=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="default", help="default (multilingual-e5-small) or a "
                    "local encoder directory")
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64, help="the worker's batch size")
    ap.add_argument("--other-batch", type=int, default=7,
                    help="a second batching of the same texts, for batch dependence")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="best of N interleaved runs")
    args = ap.parse_args(argv)
    if args.model == "default":
        from models.sentiment_base import ensure_base_model

        model = str(ensure_base_model())
    else:
        model = args.model
    items = texts(args.texts)
    print(f"{len(items)} distinct texts, batch {args.batch} (other batching "
          f"{args.other_batch}), {args.threads} threads; {describe()}; int8 exact here: "
          f"{int8_is_exact()}, bf16 in hardware here: {bf16_is_fast()}, auto picks "
          f"{encoder_precision()}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    embedders = {f: TransformerEmbedder(model, precision=f, threads=args.threads,
                                        batch_size=args.batch, device="cpu") for f in FORMATS}
    rates = dict.fromkeys(FORMATS, 0.0)
    vectors: dict[str, np.ndarray] = {}
    for e in embedders.values():  # warm-up (first-call allocations)
        e.embed(items[:args.batch])
    for _ in range(args.repeats):
        for f, e in embedders.items():
            start = time.perf_counter()
            vectors[f] = embed_in(e, items, len(items))
            rates[f] = max(rates[f], len(items) / (time.perf_counter() - start))
    threshold = ClusterSettings().semantic_cosine
    base = joined(vectors["fp32"], threshold)
    print(f"pairs at cosine >= {threshold} in fp32: {int(base.sum()):,} of "
          f"{len(items) * (len(items) - 1) // 2:,}")
    print("format | texts/s | vs fp32 | cos to fp32 min / mean | batch dependence min / mean "
          "| pairs judged unlike fp32 | pairs judged unlike between batchings")
    for f in FORMATS:
        mine = vectors[f]
        other = embed_in(embedders[f], items, args.other_batch)
        to_fp32 = np.sum(mine * vectors["fp32"], axis=1)
        across = np.sum(mine * other, axis=1)
        here = joined(mine, threshold)
        unlike = int((here ^ base).sum())
        flips = int((here ^ joined(other, threshold)).sum())
        print(f"{f} | {rates[f]:.0f} | {rates[f] / rates['fp32']:.2f}x | "
              f"{to_fp32.min():.5f} / {to_fp32.mean():.5f} | {across.min():.5f} / "
              f"{across.mean():.5f} | {unlike:,} | {flips:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
