"""Bluesky connector throughput into the real local Kafka, next to a bare websocket reader of
the same frames, in the same run.

    crowdwatch stack up
    python benchmarks/bench_ingest.py [--frames 200000] [--protocol v1|v2] [--runs 1]

A local Jetstream stand-in (``python -m streams.ingest.fakes``, its own process) serves N
synthetic frames with a firehose-like mix (likes ~55 %, posts/replies/quotes ~18 %, reposts
~12 %, follows, deletes, identity events) as fast as the client reads them.
1. baseline: a bare aiohttp websocket client reads the N frames and does nothing else;
2. connector: ``crowdwatch ingest bluesky``'s code path (parse with orjson, map, filter,
   de-duplicate, serialise, aiokafka acks=all + linger) into a fresh 4-partition topic,
   timed from the first frame to the last record acknowledged by the broker; the records
   are then counted on the topic.
Prints events/s of both and their ratio. The server, the client and Kafka share the
machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.firehose import ContentFilter  # noqa: E402
from streams.ingest.bluesky import JetstreamConnector, JetstreamOptions  # noqa: E402
from streams.ingest.common import (  # noqa: E402
    IngestMetrics,
    IngestSettings,
    make_pipeline,
    make_sink,
)
from streams.kafka_admin import ensure_topics  # noqa: E402
from streams.settings import Settings, load_settings  # noqa: E402


def start_server(frames: int, protocol: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.ingest.fakes", "jetstream", "--frames", str(frames),
         "--protocol", protocol], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit("the Jetstream stand-in did not start")
    return proc, line[1]


def path_for(protocol: str) -> str:
    return "/subscribe" if protocol == "v1" else "/xrpc/network.bsky.jetstream.subscribeEvents"


async def bare_read(url: str, n: int, protocol: str) -> float:
    """Frames/s of a client that only reads them off the websocket."""
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url + path_for(protocol), max_msg_size=8 * 1024 * 1024,
            protocols=("xrpc.v1.json",) if protocol == "v2" else ()) as ws:
        got = 0
        first = 0.0
        while got < n:
            msg = await ws.receive()
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise SystemExit(f"baseline: connection ended after {got} frames")
            if not got:
                first = time.perf_counter()
            got += 1
        return n / (time.perf_counter() - first)


async def connector_run(url: str, n: int, protocol: str, settings: Settings,
                        ingest: IngestSettings) -> tuple[float, float, int, dict[str, object]]:
    """(events/s to all acknowledged, events/s received, records produced, counts)."""
    metrics = IngestMetrics(CollectorRegistry(), "bluesky")
    sink = make_sink(None, settings, ingest, topic=settings.topic_raw, source="bluesky",
                     metrics=metrics)
    pipeline = make_pipeline("bluesky", url, sink, metrics, ContentFilter(), ingest,
                             cursor_path=None, protocol=protocol)
    connector = JetstreamConnector(pipeline, ingest, JetstreamOptions(endpoint=url,
                                                                      protocol=protocol))
    stop = asyncio.Event()
    marks: dict[str, float] = {}
    seen = 0
    process = pipeline.process

    async def counting(result: Any, raw: Any) -> None:  # marks the first and the n-th frame
        nonlocal seen
        if not seen:
            marks["first"] = time.perf_counter()
        await process(result, raw)
        seen += 1
        if seen == n:
            marks["received"] = time.perf_counter()
            stop.set()

    pipeline.process = counting  # type: ignore[method-assign]
    result = await connector.run(stop)  # returns after the final flush: all acknowledged
    done = time.perf_counter()
    if result.error:
        raise SystemExit(f"connector failed: {result.error}")
    counts = result.counts
    return (n / (done - marks["first"]), n / (marks["received"] - marks["first"]),
            counts.produced, counts.to_dict())


async def count_topic(settings: Settings, topic: str, expected: int) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=f"bench-{uuid.uuid4().hex[:8]}",
                                max_poll_records=10_000)
    await consumer.start()
    got = 0
    deadline = time.monotonic() + 60
    try:
        while got < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            got += sum(len(v) for v in batches.values())
    finally:
        await consumer.stop()
    return got


async def main_async(args: argparse.Namespace) -> None:
    base = load_settings()
    if not base.kafka_configured:
        raise SystemExit("no Kafka: run `crowdwatch stack up` first")
    ingest = IngestSettings(linger_ms=args.linger_ms, checkpoint_interval_s=2.0)
    print(f"starting the Jetstream stand-in with {args.frames:,} synthetic {args.protocol} "
          "frames ...", flush=True)
    proc, url = start_server(args.frames, args.protocol)
    try:
        for run in range(1, args.runs + 1):
            topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
            settings = base.model_copy(update={"topic_raw": topic,
                                               "topic_deadletter": topic + ".deadletter"})
            ensure_topics(settings, [topic, settings.topic_deadletter], partitions=4)
            baseline = await bare_read(url, args.frames, args.protocol)
            acked, received, produced, counts = await connector_run(
                url, args.frames, args.protocol, settings, ingest)
            on_topic = await count_topic(settings, topic, produced)
            print(f"\nrun {run}: topic {topic}")
            print(f"  bare websocket read      {baseline:>10,.0f} frames/s")
            print(f"  connector -> Kafka       {acked:>10,.0f} events/s  (all acknowledged; "
                  f"{received:,.0f}/s received)")
            print(f"  ratio connector/bare     {acked / baseline:>10.2f}")
            print(f"  records produced         {produced:>10,}  (on the topic: {on_topic:,}; "
                  f"filtered {counts['filtered']:,}: {counts['filtered_by_reason']})")
            goal = "met" if acked >= 5000 else "NOT met"
            print(f"  goal >= 5,000 events/s   {goal}")
            if on_topic != produced:
                raise SystemExit(f"topic has {on_topic} records, {produced} were acknowledged")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--protocol", choices=("v1", "v2"), default="v1")
    parser.add_argument("--linger-ms", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
