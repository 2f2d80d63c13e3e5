"""Worker throughput and end-to-end latency on the real local Kafka, side by side with a raw
aiokafka consumer of the same topic, in the same run.

    crowdwatch stack up
    python benchmarks/bench_worker.py [--posts 60000] [--workers 1 2] [--rate 2000]

Phase 1 (throughput): N posts are preloaded into a fresh 4-partition topic; a raw aiokafka
consumer reads them all (the ceiling for a Python consumer), then K worker processes
(`crowdwatch worker`, one consumer group) enrich them; posts/s is counted on the output
topics (posts.enriched + posts.deadletter) from the first to the last output.
Phase 2 (latency): with workers running, posts are produced at a fixed rate; latency is
the time from producing a post to its enriched output arriving at a consumer (p50/p95/p99),
against the same measure for a raw consumer of the input topic.
Posts come from ../shared/data/replay (real CrisisLex tweets, ids made unique per copy)
plus 0.1 % malformed records, which must come out on the dead-letter topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streams.kafka_admin import ensure_topics  # noqa: E402
from streams.settings import load_settings  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "replay"
SAMPLE = REPO / "streams" / "data" / "demo-koningsdag.synthetic.posts.jsonl"
MALFORMED = [b"not json", b'{"id": 5}', b"[1, 2]", b'{"id": "x", "text": 7}', b"\xff\xfe"]


def load_posts(n: int) -> list[tuple[bytes | None, bytes]]:
    """(key, value) pairs; the key is the post id as `crowdwatch replay` sends it."""
    files = sorted(SHARED.glob("*.posts.jsonl")) or [SAMPLE]
    base = [json.loads(line) for f in files for line in f.read_text("utf-8").splitlines() if line]
    out: list[tuple[bytes | None, bytes]] = []
    i = 0
    while len(out) < n:
        if i % 1000 == 999:
            out.append((None, MALFORMED[(i // 1000) % len(MALFORMED)]))
        else:
            post = dict(base[i % len(base)])
            post["id"] = f"{post['id']}-{i}"
            out.append((post["id"].encode(), json.dumps(post, ensure_ascii=False).encode()))
        i += 1
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def produce(bootstrap: str, topic: str, posts: list[tuple[bytes | None, bytes]],
                  rate: float | None = None, sent_at: dict[bytes, float] | None = None) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    start = time.monotonic()
    try:
        for i, (key, value) in enumerate(posts):
            if rate:
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if sent_at is not None and key is not None:
                sent_at[key] = time.time()
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - start


async def count_until(bootstrap: str, topics: list[str], n: int, limit_s: float,
                      sent_at: dict[bytes, float] | None = None,
                      ) -> tuple[int, float, float, list[float]]:
    """Consume ``topics`` from the start until n records: (count, first_t, last_t, latencies)."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"bench-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
                                max_poll_records=5000, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    got = 0
    first = last = 0.0
    lat: list[float] = []
    deadline = time.monotonic() + limit_s
    try:
        while got < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                if not records:
                    continue
                if not first:
                    first = time.monotonic()
                got += len(records)
                last = time.monotonic()
                if sent_at is not None:
                    lat.extend(now - sent_at[r.key] for r in records
                               if r.key is not None and r.key in sent_at)
    finally:
        await consumer.stop()
    return got, first, last, lat


def faust_noop_rate(bootstrap: str, topic: str, n: int, logdir: Path) -> float:
    """The framework ceiling: a Faust agent that takes the same batches and does nothing."""
    code = f"""
import asyncio, time, faust
app = faust.App("noop-{uuid.uuid4().hex[:8]}", broker="kafka://{bootstrap}", web_enabled=False,
                broker_session_timeout=10, stream_buffer_maxsize=4096,
                broker_max_poll_records=500, datadir="{logdir}/noop")
topic = app.topic("{topic}", value_serializer="raw", key_serializer="raw")
seen = {{"n": 0, "t0": None}}
@app.agent(topic, concurrency=2)
async def noop(stream):
    async for events in stream.take_events(500, 0.2):
        seen["t0"] = seen["t0"] or time.monotonic()
        seen["n"] += len(events)
async def main():
    await app.start()
    while seen["n"] < {n}:
        await asyncio.sleep(0.05)
    print(seen["n"] / (time.monotonic() - seen["t0"]))
    await app.stop()
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def start_workers(k: int, tag: str, env_base: dict[str, str], logdir: Path,
                  ) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(k):
        env = dict(env_base, CROWDWATCH_WEB_PORT=str(17100 + i))
        log = (logdir / f"worker-{i}.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_ready(k: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for i in range(k):
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{17100 + i}/health", timeout=1) as r:
                    body = json.loads(r.read())
                    if body.get("assigned_partitions"):
                        break
            except Exception:  # noqa: S110 - not up yet
                pass
            time.sleep(0.3)


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=60_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rate", type=float, default=2000.0, help="posts/s in the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    args = ap.parse_args()
    settings = load_settings()
    if not settings.kafka_configured:
        print("no Kafka configured: run `crowdwatch stack up` first", file=sys.stderr)
        return 2
    bs = settings.kafka_bootstrap
    posts = load_posts(args.posts)
    logdir = Path(tempfile.mkdtemp(prefix="crowdwatch-bench-"))
    event = REPO / "streams" / "data" / "koningsdag-amsterdam.yaml"
    results = []

    # ---- phase 1: throughput
    tag = f"bench-{uuid.uuid4().hex[:6]}"
    raw = f"{tag}.raw"
    ensure_topics(settings.model_copy(update={"topic_partitions": 4}), [raw])
    secs = asyncio.run(produce(bs, raw, posts))
    print(f"preloaded {len(posts):,} posts into {raw} in {secs:.1f} s", flush=True)
    got, first, last, _ = asyncio.run(count_until(bs, [raw], len(posts), 120))
    raw_rate = got / (last - first) if last > first else float("nan")
    print(f"raw aiokafka consume: {got:,} records, {raw_rate:,.0f} records/s", flush=True)
    noop_rate = faust_noop_rate(bs, raw, len(posts), logdir)
    print(f"faust no-op agent: {noop_rate:,.0f} records/s", flush=True)
    for k in args.workers:
        app_tag = f"{tag}-w{k}"
        env = dict(os.environ, CROWDWATCH_APP_ID=app_tag, CROWDWATCH_TOPIC_RAW=raw,
                   CROWDWATCH_TOPIC_ENRICHED=f"{app_tag}.enriched",
                   CROWDWATCH_TOPIC_DEADLETTER=f"{app_tag}.deadletter",
                   CROWDWATCH_EVENT_FILE=str(event), CROWDWATCH_BROKER_SESSION_TIMEOUT="10",
                   CROWDWATCH_DATA_DIR=str(logdir / "data"), CROWDWATCH_SENTIMENT_MODEL="off")
        ensure_topics(settings, [f"{app_tag}.enriched", f"{app_tag}.deadletter"])
        procs = start_workers(k, app_tag, env, logdir)
        try:
            got, first, last, _ = asyncio.run(count_until(
                bs, [f"{app_tag}.enriched", f"{app_tag}.deadletter"], len(posts), 300))
        finally:
            stop_workers(procs)
        rate = got / (last - first) if last > first else float("nan")
        results.append((k, got, rate))
        print(f"{k} worker(s): {got:,} outputs, {rate:,.0f} posts/s", flush=True)

    # ---- phase 2: latency at a fixed rate (1 worker)
    n_lat = int(args.rate * args.latency_seconds)
    lat_posts = posts[:n_lat]
    ltag = f"{tag}-lat"
    lraw = f"{ltag}.raw"
    ensure_topics(settings, [lraw, f"{ltag}.enriched", f"{ltag}.deadletter"])
    env = dict(os.environ, CROWDWATCH_APP_ID=ltag, CROWDWATCH_TOPIC_RAW=lraw,
               CROWDWATCH_TOPIC_ENRICHED=f"{ltag}.enriched",
               CROWDWATCH_TOPIC_DEADLETTER=f"{ltag}.deadletter", CROWDWATCH_EVENT_FILE=str(event),
               CROWDWATCH_BROKER_SESSION_TIMEOUT="10", CROWDWATCH_DATA_DIR=str(logdir / "data"),
               CROWDWATCH_BATCH_WITHIN="0.05", CROWDWATCH_SENTIMENT_MODEL="off")
    procs = start_workers(1, ltag, env, logdir)
    try:
        wait_ready(1)

        async def run_latency() -> tuple[list[float], list[float]]:
            sent: dict[bytes, float] = {}
            raw_task = asyncio.create_task(count_until(bs, [lraw], n_lat, 120, sent))
            out_task = asyncio.create_task(count_until(
                bs, [f"{ltag}.enriched", f"{ltag}.deadletter"], n_lat, 120, sent))
            await asyncio.sleep(2)  # consumers joined
            await produce(bs, lraw, lat_posts, rate=args.rate, sent_at=sent)
            raw_res, out_res = await asyncio.gather(raw_task, out_task)
            return raw_res[3], out_res[3]

        raw_lat, out_lat = asyncio.run(run_latency())
    finally:
        stop_workers(procs)

    print()
    print("=" * 72)
    print(f"enrichment path, {len(posts):,} posts (real CrisisLex tweets + 0.1 % malformed), "
          f"{os.cpu_count()} cores")
    print(f"{'':28s}{'posts/s':>12s}{'ratio to raw':>14s}")
    print(f"{'raw aiokafka consume':28s}{raw_rate:12,.0f}{1.0:14.2f}")
    print(f"{'faust no-op agent':28s}{noop_rate:12,.0f}{noop_rate / raw_rate:14.3f}")
    for k, _got, rate in results:
        print(f"{f'crowdwatch worker x{k}':28s}{rate:12,.0f}{rate / raw_rate:14.3f}"
              f"   ({rate / noop_rate:.2f}x of the faust no-op agent)")
    print(f"latency at {args.rate:,.0f} posts/s for {args.latency_seconds:.0f} s "
          f"(produce -> consumed), ms:")
    print(f"{'':28s}{'p50':>8s}{'p95':>8s}{'p99':>8s}{'n':>8s}")
    for name, lat in (("raw aiokafka consume", raw_lat), ("crowdwatch worker x1", out_lat)):
        print(f"{name:28s}{pct(lat, .5) * 1e3:8.0f}{pct(lat, .95) * 1e3:8.0f}"
              f"{pct(lat, .99) * 1e3:8.0f}{len(lat):8d}")
    if raw_lat and out_lat:
        print(f"p95 ratio worker/raw: {pct(out_lat, .95) / pct(raw_lat, .95):.1f}x; "
              f"mean {statistics.mean(out_lat) * 1e3:.0f} ms")
    best = max(r for _, _, r in results)
    print(f"goal >= 10,000 posts/s: {'met' if best >= 10_000 else 'NOT met'} "
          f"(best {best:,.0f} posts/s)")
    print(f"worker logs: {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
