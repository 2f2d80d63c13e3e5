"""Online claim clustering: posts/s and per-post cost after 1k, 100k and 1M posts, memory,
and the LSH lookup against a naive exact scan over all active cluster centroids, in one run.

    python benchmarks/bench_clusters.py [--posts 1000000] [--naive 100000]
    python benchmarks/bench_clusters.py --embedder default --posts 20000 --naive 0

Posts: ``models.generate.iter_generate("rumour-rebuttal")`` streamed lazily (Dutch + English
festival traffic with a planted rumour, replies, reposts and quotes), spread over a long
stretch of event time (default 0.8 posts a second of event time, so 1M posts cover the
generator's 14-day maximum) so clusters idle for the TTL (3 h) expire as they would in a
long event. Nothing is pre-generated or replayed: the generator (~30k posts/s) runs outside
the timed region; only ``OnlineClusterer.add_batch`` (batches of ``--batch`` posts, as the
rumour tracker calls it) and the ``expire()`` call after each batch are timed.

Embeddings: the main run uses the model-free ``HashingEmbedder`` (deterministic, cheap;
``--embedder hashing``). ``--embedder default`` uses the served multilingual-e5-small (int8,
with its text cache) on fewer posts; embedding costs per root that the near-duplicate index
does not place and does not depend on the number of clusters.

Per-post cost at a mark is the mean over the ``--window`` posts that end at it (wall and
process CPU time; the CPU figure is the one the flatness goal is judged on because the
machine is shared). Memory: VmRSS from /proc/self/status, next to the clusterer's own counts
(active clusters, tracked post ids, posts inside the last TTL of event time).

Baseline, same run: ``NaiveClusterer`` is the same clusterer whose semantic lookup scans every
active cluster centroid (O(clusters) per lookup) instead of probing the random-hyperplane
LSH buckets; it runs the first ``--naive`` posts of the same stream. A second table
(``--scaling``) times just the semantic lookup against N live clusters (random anchors) for
growing N, LSH against the exact scan.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.clusters import (  # noqa: E402
    Cluster,
    ClusterInput,
    ClusterSettings,
    OnlineClusterer,
    input_from_post,
)
from models.embed import HashingEmbedder, TextEmbedder, load_embedder  # noqa: E402
from models.generate import iter_generate  # noqa: E402

MARKS = (1_000, 100_000, 1_000_000)
GOAL_RATIO = 1.5


class TimedClusterer(OnlineClusterer):
    """The library clusterer; only counts calls and time of the semantic lookup."""

    def __init__(self, settings: ClusterSettings | None = None,
                 embedder: TextEmbedder | None = None) -> None:
        super().__init__(settings, embedder)
        self.lookups = 0
        self.lookup_s = 0.0

    def _nearest(self, vector: np.ndarray, words: set[str]) -> str | None:
        t = time.perf_counter()
        out = self._lookup(vector, words)
        self.lookup_s += time.perf_counter() - t
        self.lookups += 1
        return out

    def _lookup(self, vector: np.ndarray, words: set[str]) -> str | None:
        return super()._nearest(vector, words)


class NaiveClusterer(TimedClusterer):
    """Baseline: the semantic lookup compares the root with every active cluster's anchor
    (same acceptance rule as the library: cosine threshold and a shared anchor word)."""

    def _lookup(self, vector: np.ndarray, words: set[str]) -> str | None:
        threshold = self.settings.semantic_cosine
        best: tuple[float, str] | None = None
        for cid, c in self.clusters.items():
            if c.centroid is None or not (words & c.anchor_terms):
                continue
            cos = float(c.centroid @ vector)
            if cos >= threshold and (best is None or (cos, cid) > best):
                best = (cos, cid)
        return best[1] if best else None


@dataclass
class Mark:
    posts: int
    clusters: int
    tracked: int
    in_window: int
    largest: int
    expired: int
    rss_mib: float
    wall_us: float  # mean wall time per post over the window ending here
    cpu_us: float
    rate: float  # posts/s over that window (wall)
    lookups: int  # semantic lookups in the window
    lookup_us: float  # mean per lookup in the window


def rss_mib() -> float:
    """Resident set size of this process (VmRSS), MiB; nan where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _ts(post: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(post["created_at"]).replace("Z", "+00:00")).timestamp()


def stream_batches(n: int, *, seed: int, rate: float, batch: int,
                   scenario: str = "rumour-rebuttal") -> Iterator[list[ClusterInput]]:
    """``n`` generated posts as clusterer inputs, ``batch`` at a time, in arrival order."""
    minutes = min(20160.0, max(60.0, n / rate / 60.0))
    buf: list[ClusterInput] = []
    for post in iter_generate(scenario, seed=seed, n_posts=n, duration_minutes=minutes):
        author = post.get("author") or {}
        key = f"{post.get('platform')}:{author.get('id')}" if author.get("id") else None
        buf.append(input_from_post(post, ts=_ts(post), author_key=key))
        if len(buf) >= batch:
            yield buf
            buf = []
    if buf:
        yield buf


def run_stream(clusterer: TimedClusterer, batches: Iterator[list[ClusterInput]],
               marks: Sequence[int], window: int, *, label: str = "",
               progress_every: int = 0) -> list[Mark]:
    """Feed the batches; a :class:`Mark` for every mark reached (window ending at it)."""
    ttl = clusterer.settings.ttl_s
    recent: deque[float] = deque()  # event times of the posts inside the last TTL
    # per batch: (posts so far, posts in it, wall s, cpu s, lookups, lookup s)
    hist: deque[tuple[int, int, float, float, int, float]] = deque()
    out: list[Mark] = []
    todo = sorted(set(marks))
    n = 0
    start = time.perf_counter()
    for items in batches:
        lookups0, lookup_s0 = clusterer.lookups, clusterer.lookup_s
        c0, t0 = time.process_time(), time.perf_counter()
        clusterer.add_batch(items)
        clusterer.expire(clusterer.watermark)
        t1, c1 = time.perf_counter(), time.process_time()
        n += len(items)
        hist.append((n, len(items), t1 - t0, c1 - c0, clusterer.lookups - lookups0,
                     clusterer.lookup_s - lookup_s0))
        while hist and hist[0][0] <= n - 2 * window:
            hist.popleft()
        recent.extend(p.ts for p in items)
        limit = clusterer.watermark - ttl
        while recent and recent[0] < limit:
            recent.popleft()
        if progress_every and n % progress_every < len(items):
            print(f"  {label} {n:>9,} posts  {time.perf_counter() - start:7.1f} s  "
                  f"{len(clusterer):,} clusters  {clusterer.tracked_posts:,} tracked  "
                  f"{rss_mib():.0f} MiB", flush=True)
        while todo and n >= todo[0]:
            mark = todo.pop(0)
            win = [h for h in hist if h[0] - h[1] >= mark - window] or [hist[-1]]
            posts = sum(h[1] for h in win)
            wall = sum(h[2] for h in win)
            cpu = sum(h[3] for h in win)
            lk = sum(h[4] for h in win)
            lks = sum(h[5] for h in win)
            out.append(Mark(
                posts=n, clusters=len(clusterer), tracked=clusterer.tracked_posts,
                in_window=len(recent), largest=max((c.size for c in clusterer.clusters.values()),
                                                   default=0),
                expired=clusterer.expired_total, rss_mib=rss_mib(),
                wall_us=wall / posts * 1e6, cpu_us=cpu / posts * 1e6,
                rate=posts / wall if wall > 0 else float("inf"),
                lookups=lk, lookup_us=lks / lk * 1e6 if lk else float("nan")))
    return out


def lookup_scaling(sizes: Sequence[int], *, dim: int = 256, queries: int = 300,
                   seed: int = 5) -> list[tuple[int, float, float]]:
    """(clusters, LSH µs per lookup, exact-scan µs per lookup) with N live clusters whose
    anchors are random unit vectors and which share an anchor word with every query (so the
    word filter rejects nothing and each candidate costs a cosine)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, float, float]] = []
    for size in sizes:
        lsh = TimedClusterer(ClusterSettings(), HashingEmbedder(dim))
        naive = NaiveClusterer(ClusterSettings(), HashingEmbedder(dim))
        vecs = rng.standard_normal((size, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i in range(size):
            # _open + _update_centroid is what a new root does once it has been placed
            for c in (lsh, naive):
                cluster: Cluster = c._open(f"s{i}", 0.0)
                cluster.anchor_terms.add("metro")
                c._update_centroid(cluster, vecs[i])
        qs = rng.standard_normal((queries, dim)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        per_lookup: list[float] = []
        for c in (lsh, naive):
            t = time.perf_counter()
            for q in qs:
                c._nearest(q, {"metro"})
            per_lookup.append((time.perf_counter() - t) / queries * 1e6)
        out.append((size, per_lookup[0], per_lookup[1]))
    return out


def _table(rows: list[Mark], title: str) -> None:
    print(title)
    print(f"{'posts':>10s}{'clusters':>10s}{'tracked':>10s}{'in TTL':>9s}{'largest':>9s}"
          f"{'expired':>9s}{'RSS MiB':>9s}{'posts/s':>9s}{'µs/post':>9s}{'cpu µs':>8s}"
          f"{'lookups':>9s}{'µs/lookup':>10s}")
    for m in rows:
        print(f"{m.posts:>10,}{m.clusters:>10,}{m.tracked:>10,}{m.in_window:>9,}{m.largest:>9,}"
              f"{m.expired:>9,}{m.rss_mib:>9.0f}{m.rate:>9,.0f}{m.wall_us:>9.0f}{m.cpu_us:>8.0f}"
              f"{m.lookups:>9,}{m.lookup_us:>10.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=1_000_000)
    ap.add_argument("--embedder", default="hashing", help="hashing | default | PATH")
    ap.add_argument("--naive", type=int, default=100_000,
                    help="posts for the exact-scan baseline (0: skip)")
    ap.add_argument("--scaling", type=int, nargs="*", default=[1_000, 10_000, 100_000],
                    help="cluster counts for the lookup-only table (none: skip)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--window", type=int, default=1_000, help="posts per measuring window")
    ap.add_argument("--rate", type=float, default=0.8, help="posts per second of event time")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--progress", type=int, default=100_000, help="print every N posts")
    args = ap.parse_args(argv)

    embedder: TextEmbedder | None
    if args.embedder == "hashing":
        embedder = HashingEmbedder()
    else:
        embedder = load_embedder(args.embedder, threads=args.threads)
    marks = sorted({m for m in MARKS if m <= args.posts} | {args.posts})
    settings = ClusterSettings()
    minutes = min(20160.0, max(60.0, args.posts / args.rate / 60.0))
    dim = embedder.dim if embedder else 0
    print(f"embedder {args.embedder} ({type(embedder).__name__}, dim {dim}); "
          f"{args.posts:,} posts of 'rumour-rebuttal' seed {args.seed} over {minutes:,.0f} min "
          f"of event time; ttl {settings.ttl_s / 3600:.1f} h; add_batch of {args.batch} + "
          f"expire(); windows of {args.window:,} posts", flush=True)

    main_c = TimedClusterer(settings, embedder)
    t = time.perf_counter()
    rows = run_stream(main_c, stream_batches(args.posts, seed=args.seed, rate=args.rate,
                                             batch=args.batch),
                      marks, args.window, label="lsh", progress_every=args.progress)
    total = time.perf_counter() - t
    print()
    _table(rows, f"OnlineClusterer (LSH lookups), {args.embedder} embedder")
    print(f"whole run incl. the generator: {args.posts / total:,.0f} posts/s")

    naive_rows: list[Mark] = []
    if args.naive > 0:
        n_naive = min(args.naive, args.posts)
        naive_marks = [m for m in marks if m <= n_naive] or [n_naive]
        naive_c = NaiveClusterer(settings, embedder)
        # the same stream (same seed and event-time rate), cut at n_naive
        naive_rows = run_stream(naive_c, _prefix(stream_batches(
            args.posts, seed=args.seed, rate=args.rate, batch=args.batch), n_naive),
            naive_marks, args.window, label="naive", progress_every=args.progress)
        print()
        _table(naive_rows, f"Baseline: exact scan over all active centroids, first "
                           f"{n_naive:,} posts of the same stream")
        print(f"{'posts':>10s}{'clusters':>10s}{'LSH µs/post':>13s}{'scan µs/post':>14s}"
              f"{'LSH µs/lookup':>15s}{'scan µs/lookup':>16s}")
        by_posts = {m.posts: m for m in rows}
        for nm in naive_rows:
            lm = by_posts.get(nm.posts)
            if lm is None:
                continue
            print(f"{nm.posts:>10,}{lm.clusters:>10,}{lm.cpu_us:>13.0f}{nm.cpu_us:>14.0f}"
                  f"{lm.lookup_us:>15.1f}{nm.lookup_us:>16.1f}")

    if args.scaling:
        print()
        print("Semantic lookup alone against N live clusters (random anchors, 300 queries)")
        print(f"{'clusters':>10s}{'LSH µs':>10s}{'scan µs':>10s}{'scan/LSH':>10s}")
        for size, a, b in lookup_scaling(args.scaling, dim=embedder.dim if embedder else 256):
            print(f"{size:>10,}{a:>10.1f}{b:>10.1f}{b / a:>10.1f}")

    first, last = rows[0], rows[-1]
    ratio = last.cpu_us / first.cpu_us
    wall_ratio = last.wall_us / first.wall_us
    print()
    print("=" * 72)
    print(f"per-post cost after {last.posts:,} posts / after {first.posts:,} posts: "
          f"{ratio:.2f}x cpu ({wall_ratio:.2f}x wall); goal <= {GOAL_RATIO}x: "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}")
    peak_window = max(m.in_window for m in rows)
    print(f"memory at {last.posts:,} posts: {last.rss_mib:.0f} MiB RSS, {last.clusters:,} "
          f"active clusters, {last.tracked:,} tracked post ids for {last.in_window:,} posts in "
          f"the last TTL (peak {peak_window:,}); {last.tracked / max(last.posts, 1):.1%} of all "
          f"posts are still tracked")
    return 0


def _prefix(batches: Iterator[list[ClusterInput]], n: int) -> Iterator[list[ClusterInput]]:
    seen = 0
    for items in batches:
        if seen >= n:
            return
        yield items[: n - seen]
        seen += len(items)


if __name__ == "__main__":
    sys.exit(main())
