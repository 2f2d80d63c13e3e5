"""Sentiment scoring speed: the batched scorer against a naive per-post
``transformers.pipeline("sentiment-analysis")`` on the same model, in the same run.

    python benchmarks/bench_sentiment.py [--model default|PATH] [--posts 4000] [--naive 400]

Texts: real tweets from ../shared/data/sentiment (several languages) plus synthetic Dutch
festival traffic from `crowdwatch generate` (repost-free, so the cache does not flatter the
model). Prints posts/s for: the naive pipeline per post (fp32 as loaded, and on the int8
model), the batched scorer fp32 and int8 (dynamic quantisation, what the default serves),
and the batched scorer with the repost/duplicate cache on a realistic stream (reposts
included); then the ratios. Goals: >= 5x the naive pipeline, >= 1,000 posts/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.generate import generate  # noqa: E402
from models.sentiment import CachedScorer, TransformerSentimentScorer  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "sentiment"


def texts(n: int) -> tuple[list[str], list[str]]:
    """(unique texts without reposts, a realistic stream with reposts)."""
    real = [json.loads(line)["text"] for f in sorted(SHARED.glob("umsab-*-val.posts.jsonl"))
            for line in f.read_text("utf-8").splitlines() if line]
    traffic = generate("rumour-rebuttal", seed=11, n_posts=max(n, 2000)).posts
    dutch = [p["text"] for p in traffic if not p.get("repost_of") and p["text"]]
    mixed = [t for pair in zip(real, dutch, strict=False) for t in pair]
    plain = (mixed * (n // max(1, len(mixed)) + 1))[:n]
    stream = [p["text"] for p in traffic][:n]
    return plain, stream


def rate(fn: object, items: list[str]) -> float:
    start = time.perf_counter()
    fn(items)  # type: ignore[operator]
    return len(items) / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--posts", type=int, default=4000)
    ap.add_argument("--naive", type=int, default=400, help="posts for the naive pipeline")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    if args.model == "default":
        from models.sentiment_default import build_default_model_dir

        path = build_default_model_dir()
    else:
        path = Path(args.model)
    plain, stream = texts(args.posts)
    print(f"model {path}; {len(plain)} texts; torch threads {torch.get_num_threads()}",
          flush=True)

    fp32 = TransformerSentimentScorer(path, threads=args.threads, quantize=False)
    int8 = TransformerSentimentScorer(path, threads=args.threads, quantize=True)

    def naive_rate_of(scorer: TransformerSentimentScorer) -> float:
        # the same model object (and tokenizer) through transformers' pipeline, one post a call
        naive = pipeline("sentiment-analysis", model=scorer.model, tokenizer=scorer.tokenizer,
                         device=-1, truncation=True, max_length=scorer.max_length)
        naive(plain[:5])  # warm up
        return rate(lambda xs: [naive(x) for x in xs], plain[: args.naive])

    naive_fp32 = naive_rate_of(fp32)
    naive_int8 = naive_rate_of(int8)
    print(f"naive pipeline, one post per call: fp32 {naive_fp32:,.0f}, int8 {naive_int8:,.0f} "
          "posts/s", flush=True)

    fp32.score(plain[:64])
    fp32_rate = rate(fp32.score, plain)
    print(f"batched fp32: {fp32_rate:,.0f} posts/s", flush=True)

    int8.score(plain[:64])
    int8_rate = rate(int8.score, plain)
    agree = sum(a.label == b.label for a, b in zip(fp32.score(plain[:1000]),
                                                   int8.score(plain[:1000]), strict=True))
    print(f"batched int8: {int8_rate:,.0f} posts/s (same label as fp32 on "
          f"{agree / min(1000, len(plain)):.1%})", flush=True)

    cached = CachedScorer(TransformerSentimentScorer(path, threads=args.threads, quantize=True))
    cached_rate = rate(cached.score, stream)
    print(f"batched int8 + cache on a stream with reposts: {cached_rate:,.0f} posts/s "
          f"({cached.stats()})", flush=True)

    best = max(fp32_rate, int8_rate)
    print()
    print("=" * 72)
    print(f"{'':40s}{'posts/s':>10s}{'x naive (same precision)':>26s}")
    for name, r, base in (("naive pipeline fp32 (per post)", naive_fp32, naive_fp32),
                          ("naive pipeline int8 (per post)", naive_int8, naive_int8),
                          ("batched fp32", fp32_rate, naive_fp32),
                          ("batched int8 (served default)", int8_rate, naive_int8),
                          ("batched int8 + cache (stream)", cached_rate, naive_int8)):
        print(f"{name:40s}{r:10,.0f}{r / base:26.1f}")
    ratio = int8_rate / naive_fp32
    print(f"goal served scorer >= 5x transformers.pipeline on the same checkpoint (as loaded, "
          f"fp32): {'met' if ratio >= 5 else 'NOT met'} ({ratio:.1f}x; same-precision ratios "
          f"fp32 {fp32_rate / naive_fp32:.1f}x, int8 {int8_rate / naive_int8:.1f}x)")
    print(f"goal >= 1,000 posts/s: {'met' if best >= 1000 else 'NOT met'} (best {best:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
