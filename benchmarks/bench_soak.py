"""Soak: many generated posts through the full pipeline on the local stack, with memory
sampled every minute.

    crowdwatch stack up
    python benchmarks/bench_soak.py --posts 1000000 [--rate 1200] [--scenario rumour-rebuttal]
        [--sentiment default|off] [--embedder default|hashing] [--no-alertmanager]

1. Posts are generated to a temp file first (``models.generate.iter_generate``, lazily;
   not timed), spread over ``--duration-minutes`` of event time (12 h for 1M posts, longer than
   the 3 h cluster TTL, so the rumour stage's state turns over during the run), with one
   malformed line every ``--malformed-every`` lines (they must come out dead-lettered).
2. Baselines, same run: the producer alone (aiokafka, unthrottled, the same file into a
   scratch topic) and a raw aiokafka consumer reading that topic back.
3. One ``crowdwatch worker`` process with the full pipeline: enrichment (the packaged
   King's Day event), sentiment (default model), rumour clusters (default embedder),
   official reach/rebuttals/webcare (the event's official accounts), event alerts pushed
   to the local Alertmanager. Unique topics, consumer group and Redis prefix per run.
4. The posts are fed at ``--rate`` posts/s (0 = as fast as the producer goes). Every
   ``--sample-every`` s (60): worker RSS (process + children, /proc; also each process's
   RSS, its anonymous part and its CPU share since the last sample), posts done per stage
   (/metrics), consumer lag per input topic (committed offsets of the group).
5. After the run the output topics are read back: lost = valid posts missing from
   posts.enriched + malformed lines missing from the dead-letter topic (distinct); latency
   from the raw record's Kafka timestamp to its scored output's Kafka timestamp (sampled
   ids); double counted = posts counted in Redis beyond the distinct enriched ones.

"Post-to-metric" latency is the mood path: the sentiment agent updates the mood metrics
and then sends the scored record, so the scored record's timestamp is when the post's
mood reached /metrics (it is also the later of the two stages with one output per post).
The enrichment histogram ``crowdwatch_processing_latency_seconds`` is printed beside it.
The rumour stage has no per-post output; its delay shows as the lag of posts.claims.

Memory: bounded when the RSS levelled off, i.e. grew by at most max(MEMORY_SLACK_MB,
MEMORY_SLACK_SHARE) over the last quarter of the samples (25 MB, 2.5 %;
:func:`memory_bounded`; no verdict with fewer than 8 samples
or when the posts span less event time than the cluster TTL). The growth over the last half
is printed and recorded beside it.

Sustained posts/s = posts fully processed (scored AND clustered) / seconds from the first
post sent to the moment both stages had every post (scored: the sentiment counter;
clustered: the group committed every posts.claims record, lag 0); per stage likewise. With
``--rate`` below the pipeline's capacity it equals the offered rate (and the latency is
the latency at that load); ``--rate 0`` measures the capacity (latency is then queueing).

Writes the result with ``tests.reliability_report.record("soak", ...)`` and re-renders
docs/reliability.md. Deletes the run's topics, its Redis keys and the temp file at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.machine import describe  # noqa: E402
from models.generate import SCENARIOS, iter_generate, write_traffic  # noqa: E402
from streams.embedded import free_port  # noqa: E402
from streams.kafka_admin import delete_topics, ensure_topics  # noqa: E402
from streams.settings import Settings, load_settings, stack_file  # noqa: E402
from tests.reliability_report import record, render  # noqa: E402

EVENT_FILE = REPO / "streams" / "data" / "koningsdag-amsterdam.yaml"
EVENT_NAME = "koningsdag-amsterdam"
MALFORMED = (b"not json", b'{"id": 5}', b"[1, 2]", b'{"id": "x", "text": 7}', b"\xff\xfe")
GOAL_RATE = 1000.0
GOAL_P95_S = 2.0
#: the memory rule: growth over the last quarter of the samples of at most
#: max(MEMORY_SLACK_MB, MEMORY_SLACK_SHARE x the RSS where that quarter starts)
MEMORY_SLACK_MB = 25.0
MEMORY_SLACK_SHARE = 0.025
LATENCY_SAMPLES = 50_000


def memory_growth(rss: Sequence[float]) -> tuple[float, float]:
    """RSS growth (MB) over the last half and over the last quarter of the samples."""
    if len(rss) < 2:
        return 0.0, 0.0
    return rss[-1] - rss[len(rss) // 2], rss[-1] - rss[(3 * len(rss)) // 4]


def memory_bounded(rss: Sequence[float]) -> bool | None:
    """True when the RSS levelled off by the end of the run, None when there are too few
    samples (fewer than 8) to tell.

    The rumour stage's state fills until its cluster window is full and then stays flat, so
    a run's curve rises and then levels off; a leak keeps rising to the end. The rule reads
    the last quarter of the run: growth there of at most max(:data:`MEMORY_SLACK_MB`,
    :data:`MEMORY_SLACK_SHARE`). For a steady
    leak that is about as strict as the earlier rule (max(50 MB, 5 %) over the last half),
    but a fill that ends after the half-way point no longer reads as a leak (the 1M run of
    2026-12-06 23:12 UTC: +153 MB over the last half, all of it before 750,000 posts, then
    flat for five samples)."""
    if len(rss) < 8:
        return None
    quarter_start = rss[(3 * len(rss)) // 4]
    return memory_growth(rss)[1] <= max(MEMORY_SLACK_MB, MEMORY_SLACK_SHARE * quarter_start)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ---------------------------------------------------------------- input


def write_input(path: Path, scenario: str, seed: int, n_posts: int, minutes: float,
                malformed_every: int) -> tuple[int, int]:
    """Generate the posts (+ malformed lines) into ``path``; (valid, malformed)."""
    tmp = path.parent / "gen"
    posts_path, _ = write_traffic(iter_generate(scenario, seed=seed, n_posts=n_posts,
                                                duration_minutes=minutes), tmp)
    valid = malformed = 0
    with posts_path.open("rb") as src, path.open("wb") as out:
        for i, line in enumerate(src):
            if malformed_every and i % malformed_every == malformed_every - 1:
                out.write(MALFORMED[malformed % len(MALFORMED)].replace(b"\n", b" ") + b"\n")
                malformed += 1
            out.write(line)
            valid += 1
    shutil.rmtree(tmp, ignore_errors=True)
    return valid, malformed


def iter_input(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) as ``crowdwatch replay`` sends them: the post id, None when unreadable."""
    with path.open("rb") as fh:
        for raw in fh:
            value = raw.rstrip(b"\n")
            key: bytes | None = None
            try:
                obj = orjson.loads(value)
                if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
                    key = str(obj["id"]).encode()
            except orjson.JSONDecodeError:
                pass
            yield key, value


# ---------------------------------------------------------------- Kafka helpers


async def produce(bootstrap: str, topic: str, path: Path, rate: float,
                  sent: list[int] | None = None) -> tuple[float, float]:
    """Send the file's lines to ``topic`` (``rate`` posts/s, 0 = unthrottled); returns
    (start, end) as time.time()."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    start = time.time()
    t0 = time.monotonic()
    try:
        for i, (key, value) in enumerate(iter_input(path)):
            if rate and i % 20 == 0:
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            await producer.send(topic, value, key=key)
            if sent is not None:
                sent[0] = i + 1
        await producer.flush()
    finally:
        await producer.stop()
    return start, time.time()


async def read_topic(bootstrap: str, topic: str,
                     on_batch: Callable[[list[Any]], None]) -> tuple[int, float]:
    """Read ``topic`` from the beginning to its current end; (records, seconds)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    n = 0
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        t0 = time.monotonic()
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                n += len(records)
                on_batch(records)
                if records and records[-1].offset >= ends[tp] - 1:
                    todo.discard(tp)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return n, time.monotonic() - t0
    finally:
        await consumer.stop()


class GroupLag:
    """Records behind per input topic of the worker's consumer group (committed offsets)."""

    def __init__(self, settings: Settings, groups: Sequence[str], topics: list[str]) -> None:
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        self.groups = list(groups)  # the worker's, and its rumour process's when it has one
        self.topics = topics
        self.admin = KafkaAdminClient(client_id="soak-lag", **settings.kafka_client_kwargs())
        self.consumer = KafkaConsumer(**settings.kafka_client_kwargs())

    def lag(self) -> tuple[dict[str, int], dict[str, int]]:
        """(records behind, records committed) per topic; -1 when not readable."""
        from kafka import TopicPartition as KTP

        committed: dict[Any, Any] = {}
        try:
            for group in self.groups:
                if hasattr(self.admin, "list_group_offsets"):  # kafka-python >= 3
                    committed.update(self.admin.list_group_offsets({group: None})[group])
                else:
                    committed.update(self.admin.list_consumer_group_offsets(group))
        except Exception as exc:  # a sample without lag is better than a failed soak
            print(f"  (lag not read: {exc.__class__.__name__}: {exc})", flush=True)
            return dict.fromkeys(self.topics, -1), dict.fromkeys(self.topics, -1)
        behind: dict[str, int] = {}
        done: dict[str, int] = {}
        for topic in self.topics:
            parts = self.consumer.partitions_for_topic(topic) or set()
            tps = [KTP(topic, p) for p in parts]
            ends = self.consumer.end_offsets(tps) if tps else {}
            got = {tp: committed[tp].offset if tp in committed and committed[tp].offset >= 0
                   else 0 for tp in tps}
            behind[topic] = sum(max(0, ends[tp] - got[tp]) for tp in tps)
            done[topic] = sum(got.values())
        return behind, done

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


# ---------------------------------------------------------------- the worker


def process_usage(pid: int) -> dict[str, tuple[float, float, float]]:
    """RSS and its anonymous part (heap, not mapped files), MB, and CPU seconds used so far
    (user + system), of ``pid`` and each of its descendants, from /proc:
    ``{"worker": (rss, anon, cpu), "rumours": ..., "<comm> <pid>": ...}``.

    A descendant whose environment names a worker role (the rumour process) is filed under
    that role; ``pid`` itself is "worker" (with the rumour process on, the ingest side).
    """
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        stat_fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(stat_fields[1]), []).append(int(entry.name))
        # utime, stime (fields 14 and 15 of /proc/PID/stat)
        cpu[int(entry.name)] = (int(stat_fields[11]) + int(stat_fields[12])) / tick
    parts: dict[str, tuple[float, float, float]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in
                          Path(f"/proc/{p}/status").read_text().splitlines() if ":" in line)
            if "VmRSS" not in fields:  # a zombie
                continue
            name = "worker" if p == pid else _role(p) or f"{fields['Name'].strip()} {p}"
            rss, anon = (int(fields.get(k, "0 kB").split()[0]) / 1024
                         for k in ("VmRSS", "RssAnon"))
            was = parts.get(name, (0.0, 0.0, 0.0))
            parts[name] = (was[0] + rss, was[1] + anon, was[2] + cpu.get(p, 0.0))
    return parts


#: seconds between the memory reads whose peak each sample reports
MEMORY_READ_EVERY_S = 2.0


class PeakMemory:
    """The highest RSS and anonymous RSS of each process over the reads since the last
    sample. The worker hands free memory back to the OS every 60 s (malloc_trim), so a
    process's RSS swings by tens of MB within a minute; one read per sample would compare
    points of that cycle, not the trend (docs/reliability.md, "Soak")."""

    def __init__(self) -> None:
        self._peak: dict[str, tuple[float, float]] = {}

    def add(self, usage: dict[str, tuple[float, float, float]]) -> None:
        for name, (rss, anon, _) in usage.items():
            was = self._peak.get(name, (0.0, 0.0))
            self._peak[name] = (max(was[0], rss), max(was[1], anon))

    def take(self, usage: dict[str, tuple[float, float, float]]
             ) -> dict[str, tuple[float, float]]:
        """Add ``usage`` (the sample's own read) and return the peaks; start over."""
        self.add(usage)
        peak, self._peak = self._peak, {}
        return peak


def _role(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"CROWDWATCH_WORKER_ROLE="):
            return kv.split(b"=", 1)[1].decode(errors="replace")
    return None


def cpu_percent(before: Sample, after: Sample) -> dict[str, float]:
    """Each process's CPU between two samples, % of one core (only processes in both)."""
    dt = after.t - before.t
    return {k: 100 * (c - before.cpu[k]) / dt for k, c in sorted(after.cpu.items())
            if k in before.cpu} if dt > 0 else {}


# stage -> (metric, labels to match); summed over the other labels
STAGES: dict[str, tuple[str, dict[str, str]]] = {
    "consumed": ("crowdwatch_posts_consumed_total", {}),
    "enriched": ("crowdwatch_posts_accepted_total", {}),
    "dead_lettered": ("crowdwatch_posts_rejected_total", {}),
    "scored": ("crowdwatch_sentiment_scored_total", {}),
    "clustered": ("crowdwatch_rumour_posts_total", {}),
    "official_posts_tracked": ("crowdwatch_official_posts_tracked", {}),
    "rumour_recoveries": ("crowdwatch_rumour_recoveries_total", {}),
    "rumour_recovery_records": ("crowdwatch_rumour_recovery_records_total", {}),
    "latency_count": ("crowdwatch_processing_latency_seconds_count", {}),
}


def scrape(ports: Sequence[int]) -> tuple[dict[str, float], dict[float, float]]:
    """Stage counts and the enrich-latency histogram buckets (le -> cumulative count),
    summed over the worker's processes (``ports``: its own and its rumour process's)."""
    values = dict.fromkeys(STAGES, 0.0)
    buckets: dict[float, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        _scrape_text(text, values, buckets)
    return values, buckets


def _scrape_text(text: str, values: dict[str, float], buckets: dict[float, float]) -> None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "crowdwatch_processing_latency_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            for stage, (name, labels) in STAGES.items():
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    values[stage] += s.value


def histogram_pct(buckets: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` (Prometheus-style, interpolated)."""
    if not buckets:
        return float("nan")
    les = sorted(buckets)
    total = buckets[les[-1]]
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return les[-1]


@dataclass
class Run:
    tag: str
    settings: Settings
    env: dict[str, str]
    port: int
    logdir: Path
    proc: subprocess.Popen[bytes] | None = None
    topics: list[str] = field(default_factory=list)
    #: the rumour process's port (``--rumour-process``), else None
    rumour_port: int | None = None

    @property
    def ports(self) -> list[int]:
        return [self.port] if self.rumour_port is None else [self.port, self.rumour_port]

    @property
    def groups(self) -> list[str]:
        return [self.tag] if self.rumour_port is None else [self.tag, self.settings.rumour_app_id]

    def start(self) -> None:
        with (self.logdir / "worker.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(self.ports)
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("worker exited:\n" + self.log_tail())
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{waiting[0]}/health", timeout=2) as r:
                    if orjson.loads(r.read()).get("assigned_partitions"):
                        waiting.pop(0)
                        if not waiting:
                            return
                        continue
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.logdir / "worker.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_run(settings: Settings, args: argparse.Namespace, logdir: Path) -> Run:
    tag = f"soak-{uuid.uuid4().hex[:8]}"
    port = free_port()
    rumour_port = free_port() if args.rumour_process else None
    values: dict[str, Any] = {
        "app_id": tag, "topic_raw": f"{tag}.raw", "topic_enriched": f"{tag}.enriched",
        "topic_deadletter": f"{tag}.deadletter", "topic_scored": f"{tag}.scored",
        "topic_signals": f"{tag}.signals", "topic_claims": f"{tag}.claims",
        "topic_cluster_events": f"{tag}.clusters", "cluster_embedder": args.embedder,
        "sentiment_model": args.sentiment, "web_port": port, "data_dir": logdir / "data",
        "redis_prefix": tag, "broker_session_timeout": 10.0,
        "event_file": EVENT_FILE, "rumours_enabled": True,
        "alertmanager_url": settings.alertmanager_url if args.alertmanager else "",
        "rumour_process": bool(args.rumour_process), "rumour_web_port": rumour_port or 0,
    }
    run_settings = settings.model_copy(update=values)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDWATCH_")}
    env["CROWDWATCH_STACK_FILE"] = str(stack_file())
    env["HF_HUB_OFFLINE"] = "1"
    for key, value in values.items():
        env[f"CROWDWATCH_{key.upper()}"] = str(value)
    for item in args.worker_env:  # A/B runs of one setting, e.g. MALLOC_TRIM_EVERY_S=0
        key, _, value = item.partition("=")
        env[f"CROWDWATCH_{key.upper().removeprefix('CROWDWATCH_')}"] = value
    topics = [values[k] for k in ("topic_raw", "topic_enriched", "topic_deadletter",
                                  "topic_scored", "topic_signals", "topic_claims",
                                  "topic_cluster_events")]
    return Run(tag, run_settings, env, port, logdir, topics=topics, rumour_port=rumour_port)


def drop_redis_keys(settings: Settings, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    n = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                n += int(client.unlink(*batch))
                batch.clear()
        if batch:
            n += int(client.unlink(*batch))
    finally:
        client.close()
    return n


def redis_posts(settings: Settings, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        value = client.hget(f"{prefix}:{EVENT_NAME}:counts", "posts")
        return int(value or 0)
    finally:
        client.close()


# ---------------------------------------------------------------- the soak


@dataclass
class Sample:
    t: float
    rss_mb: float
    stages: dict[str, float]
    lag: dict[str, int]
    sent: int
    claims_done: int = 0
    #: per process (``process_usage``): name -> (RSS, anonymous RSS), MB
    parts: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: per process: CPU seconds used so far
    cpu: dict[str, float] = field(default_factory=dict)


async def soak(run: Run, path: Path, args: argparse.Namespace, valid: int, malformed: int
               ) -> dict[str, Any]:
    bs = run.settings.kafka_bootstrap
    s = run.settings
    lagger = GroupLag(s, run.groups, [s.topic_raw, s.topic_enriched, s.topic_claims])
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    sent = [0]
    done_at: dict[str, float] = {}
    # the rumour stage is done when the group committed every posts.claims record (its
    # cluster-count metric leaves out posts it had already tracked in a recovery)
    targets = {"enriched": valid, "dead_lettered": malformed, "scored": valid,
               "claims": valid}
    if args.sentiment == "off":
        targets.pop("scored")
    assert run.proc is not None
    pid = run.proc.pid

    # a /metrics request that fails or takes over 10 s (Prometheus' default scrape timeout)
    # is an outage a command post would see as a gap: count it and keep going; a worker that
    # died or stopped progressing still ends the soak (below)
    outages: list[tuple[float, float]] = []  # (start, end) seconds since t0
    down_since: list[float | None] = [None]
    last_scrape: list[tuple[dict[str, float], dict[float, float]]] = [
        (dict.fromkeys(STAGES, 0.0), {})]

    async def scrape_metrics(t0: float) -> tuple[dict[str, float], dict[float, float]]:
        try:
            got = await loop.run_in_executor(None, scrape, run.ports)
        except (OSError, ValueError) as exc:  # URLError and socket timeouts are OSErrors
            if down_since[0] is None:
                down_since[0] = at = time.time() - t0
                print(f"  /metrics unanswered at {at / 60:.1f} min "
                      f"({exc.__class__.__name__}: {exc}); load {load()}", flush=True)
            return last_scrape[0]
        if down_since[0] is not None:
            outages.append((down_since[0], time.time() - t0))
            print(f"  /metrics answers again after {outages[-1][1] - outages[-1][0]:.0f} s",
                  flush=True)
            down_since[0] = None
        last_scrape[0] = got
        return got

    async def take_sample(t0: float) -> Sample:
        stages, _ = await scrape_metrics(t0)
        lag, committed = await loop.run_in_executor(None, lagger.lag)
        usage = process_usage(pid)
        parts = peaks.take(usage)
        smp = Sample(time.time() - t0, sum(r for r, _ in parts.values()), stages, lag,
                     sent[0], committed.get(s.topic_claims, 0), parts,
                     {k: c for k, (_, _, c) in usage.items()})
        prev = samples[-1] if samples else None
        samples.append(smp)
        print(f"  {smp.t / 60:5.1f} min  sent {smp.sent:>9,}  enriched "
              f"{stages['enriched']:>9,.0f}  scored {stages['scored']:>9,.0f}  clustered "
              f"{stages['clustered']:>9,.0f}  claims done {smp.claims_done:>9,}  "
              f"lag raw/enriched/claims "
              f"{lag[s.topic_raw]:,}/{lag[s.topic_enriched]:,}/{lag[s.topic_claims]:,}  "
              f"RSS {smp.rss_mb:,.0f} MB ("
              + ", ".join(f"{k} {r:,.0f}/anon {a:,.0f}" for k, (r, a) in sorted(parts.items()))
              + ")" + ("  CPU " + ", ".join(f"{k} {v:.0f} %" for k, v in
                                             cpu_percent(prev, smp).items()) if prev else "")
              + f"  load {load()}", flush=True)
        return smp

    peaks = PeakMemory()
    t0 = time.time()
    await take_sample(t0)
    feeder = asyncio.create_task(produce(bs, s.topic_raw, path, args.rate, sent))
    next_sample = t0 + args.sample_every
    last_progress = (time.monotonic(), -1.0)
    stages: dict[str, float] = {}
    buckets: dict[float, float] = {}
    stalled = False
    while True:
        await asyncio.sleep(MEMORY_READ_EVERY_S)
        if run.proc is not None and run.proc.poll() is not None:
            raise RuntimeError("worker exited during the soak:\n" + run.log_tail())
        peaks.add(process_usage(pid))
        stages, buckets = await scrape_metrics(t0)
        stages = dict(stages)
        lag, committed = await loop.run_in_executor(None, lagger.lag)
        stages["claims"] = float(committed.get(s.topic_claims, 0))
        now = time.time()
        for stage, target in targets.items():
            if stage not in done_at and stages[stage] >= target and (
                    stage != "claims" or lag.get(s.topic_claims) == 0):
                done_at[stage] = now
        if now >= next_sample:
            await take_sample(t0)
            next_sample += args.sample_every
        if feeder.done() and len(done_at) == len(targets):
            break
        progress = sum(stages[k] for k in targets) + sent[0]
        if progress > last_progress[1]:
            last_progress = (time.monotonic(), progress)
        elif time.monotonic() - last_progress[0] > args.stall_timeout:
            print(f"no progress for {args.stall_timeout:.0f} s: stopping "
                  f"(not done: {sorted(set(targets) - set(done_at))})", flush=True)
            stalled = True
            break
    if feeder.done():
        feed_start, feed_end = feeder.result()
    else:
        feeder.cancel()
        feed_start, feed_end = t0, time.time()
    if len(samples) > 1 and time.time() - t0 - samples[-1].t < 5:
        samples.pop()  # the final sample replaces one taken just before
    await take_sample(t0)  # the final sample
    lagger.close()
    if down_since[0] is not None:
        outages.append((down_since[0], time.time() - t0))
    return {"samples": samples, "metrics_outages": outages, "done_at": done_at,
            "feed_start": feed_start, "feed_end": feed_end, "stages": stages,
            "buckets": buckets, "stalled": stalled, "t0": t0}


async def verify(run: Run, valid_ids_expected: int, malformed: int, sample_mod: int
                 ) -> dict[str, Any]:
    """Read the run's topics back: distinct outputs, lost records, latencies (sampled)."""
    s = run.settings
    bs = s.kafka_bootstrap
    raw_ts: dict[bytes, int] = {}
    raw_keys: set[bytes] = set()
    raw_malformed: set[tuple[int, int]] = set()

    def on_raw(records: list[Any]) -> None:
        for r in records:
            if r.key is None or r.value in MALFORMED:  # some malformed lines have an id
                raw_malformed.add((r.partition, r.offset))
                continue
            raw_keys.add(r.key)
            if zlib.crc32(r.key) % sample_mod == 0:
                raw_ts[r.key] = r.timestamp

    await read_topic(bs, s.topic_raw, on_raw)
    enriched: set[bytes] = set()
    enrich_lat: list[float] = []
    enriched_records = [0]

    def on_enriched(records: list[Any]) -> None:
        enriched_records[0] += len(records)
        for r in records:
            if r.key is not None:
                enriched.add(r.key)
                ts = raw_ts.get(r.key)
                if ts is not None:
                    enrich_lat.append((r.timestamp - ts) / 1000)

    await read_topic(bs, s.topic_enriched, on_enriched)
    dead: set[tuple[int, int]] = set()

    def on_dead(records: list[Any]) -> None:
        for r in records:
            src = dict(r.headers or ()).get("source", b"").decode(errors="replace")
            parts = src.rsplit("/", 2)
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                dead.add((int(parts[1]), int(parts[2])))

    await read_topic(bs, s.topic_deadletter, on_dead)
    scored: set[bytes] = set()
    mood_lat: list[float] = []

    def on_scored(records: list[Any]) -> None:
        for r in records:
            if r.key is not None and r.key not in scored:
                scored.add(r.key)
                ts = raw_ts.get(r.key)
                if ts is not None:
                    mood_lat.append((r.timestamp - ts) / 1000)

    await read_topic(bs, s.topic_scored, on_scored)
    lost_valid = len(raw_keys - enriched)
    lost_malformed = len(raw_malformed - dead)
    return {
        "raw_distinct": len(raw_keys), "raw_malformed": len(raw_malformed),
        "enriched_distinct": len(enriched), "enriched_records": enriched_records[0],
        "dead_lettered_distinct": len(dead & raw_malformed), "scored_distinct": len(scored),
        "lost": lost_valid + lost_malformed, "lost_valid": lost_valid,
        "lost_malformed": lost_malformed,
        "input_mismatch": valid_ids_expected - len(raw_keys) + malformed - len(raw_malformed),
        "enrich_lat": enrich_lat, "mood_lat": mood_lat,
    }


async def baseline(settings: Settings, path: Path, tag: str) -> tuple[float, float, int]:
    """The producer alone (unthrottled) and a raw consumer of the same topic: posts/s."""
    topic = f"{tag}.baseline"
    ensure_topics(settings, [topic])
    try:
        n_lines = sum(1 for _ in path.open("rb"))
        start, end = await produce(settings.kafka_bootstrap, topic, path, 0.0)
        n, secs = await read_topic(settings.kafka_bootstrap, topic, lambda _r: None)
        return n_lines / (end - start), n / secs if secs > 0 else float("nan"), n
    finally:
        delete_topics(settings, [topic])


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends the soak like Ctrl-C: the ``finally`` blocks stop the worker and drop the
    run's topics and Redis keys (Python's default SIGTERM exits without running them)."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1_000_000, help="valid posts to generate")
    ap.add_argument("--scenario", default="rumour-rebuttal", choices=sorted(SCENARIOS))
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--duration-minutes", type=float, default=None,
                    help="event time the posts span; default: 12 h for 1M posts (longer than "
                    "the 3 h cluster TTL, so the rumour stage's state turns over), "
                    "proportionally less for fewer posts (~1,400 posts per event minute, "
                    "at least 60 min)")
    ap.add_argument("--malformed-every", type=int, default=1000,
                    help="one malformed line every N lines (0 = none)")
    ap.add_argument("--rate", type=float, default=1200.0,
                    help="offered posts/s (0 = as fast as the producer goes: capacity)")
    ap.add_argument("--sentiment", default="default", help="default | off | a model path")
    ap.add_argument("--embedder", default="default", help="default | hashing | off | a path")
    ap.add_argument("--alertmanager", action=argparse.BooleanOptionalAction, default=True,
                    help="push event alerts to the stack's Alertmanager")
    ap.add_argument("--sample-every", type=float, default=60.0, help="seconds per sample")
    ap.add_argument("--stall-timeout", type=float, default=300.0,
                    help="give up after this many seconds without progress")
    ap.add_argument("--no-baseline", action="store_true", help="skip the producer baseline")
    ap.add_argument("--no-record", action="store_true",
                    help="do not record the result for docs/reliability.md")
    ap.add_argument("--keep", action="store_true", help="keep topics, Redis keys, temp files")
    ap.add_argument("--rumour-process", action=argparse.BooleanOptionalAction, default=False,
                    help="the worker runs its rumour stage in a child process "
                    "(CROWDWATCH_RUMOUR_PROCESS)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="SETTING=VALUE",
                    help="a worker setting for this run (CROWDWATCH_ prefix optional; "
                    "repeatable), e.g. MALLOC_TRIM_EVERY_S=0")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)

    if args.duration_minutes is None:
        args.duration_minutes = float(max(60, min(720, round(args.posts * 720 / 1e6))))
    settings = load_settings()
    if not (settings.kafka_configured and settings.redis_configured):
        print("Kafka and Redis must be configured: run `crowdwatch stack up` first",
              file=sys.stderr)
        return 2
    if args.alertmanager and not settings.alertmanager_url:
        print("no CROWDWATCH_ALERTMANAGER_URL: alerts are not pushed (--no-alertmanager)",
              file=sys.stderr)
        args.alertmanager = False
    workdir = Path(tempfile.mkdtemp(prefix="crowdwatch-soak-"))
    path = workdir / "posts.jsonl"
    print(f"load {load()} on {describe()}; generating {args.posts:,} posts "
          f"({args.scenario}, {args.duration_minutes:.0f} min of event time) ...", flush=True)
    g0 = time.monotonic()
    valid, malformed = write_input(path, args.scenario, args.seed, args.posts,
                                   args.duration_minutes, args.malformed_every)
    print(f"  {valid:,} posts + {malformed:,} malformed lines, "
          f"{path.stat().st_size / 1e6:,.0f} MB in {time.monotonic() - g0:.0f} s", flush=True)
    run = make_run(settings, args, workdir)
    replay_rate = consume_rate = float("nan")
    result: dict[str, Any] = {}
    try:
        if not args.no_baseline:
            print("baseline: the producer alone, then a raw consumer ...", flush=True)
            replay_rate, consume_rate, _ = asyncio.run(baseline(settings, path, run.tag))
            print(f"  producer {replay_rate:,.0f} posts/s, raw consumer {consume_rate:,.0f} "
                  f"posts/s (load {load()})", flush=True)
        ensure_topics(run.settings)
        run.start()
        w0 = time.monotonic()
        run.wait_ready()
        feeding = f"{args.rate:,.0f} posts/s" if args.rate else "unthrottled"
        print(f"worker {run.tag} ready in {time.monotonic() - w0:.0f} s (port "
              f"{'/'.join(map(str, run.ports))}, "
              f"sentiment {args.sentiment}, embedder {args.embedder}, alertmanager "
              f"{'on' if args.alertmanager else 'off'}); feeding {feeding}", flush=True)
        result = asyncio.run(soak(run, path, args, valid, malformed))
        run.stop()
        print("reading the outputs back ...", flush=True)
        sample_mod = max(1, valid // LATENCY_SAMPLES)
        checked = asyncio.run(verify(run, valid, malformed, sample_mod))
        counted = redis_posts(run.settings, run.tag)
    except BaseException:
        # the work dir (and the worker's log in it) is removed below: show why it died
        code = run.proc.poll() if run.proc is not None else None
        kept = Path(tempfile.gettempdir()) / f"{run.tag}.worker.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(run.logdir / "worker.log", kept)
        print(f"soak failed; worker exit code {code}; whole worker log kept in {kept}; "
              f"its tail:\n{run.log_tail()}", file=sys.stderr, flush=True)
        raise
    finally:
        run.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                delete_topics(settings, run.topics)
            with contextlib.suppress(Exception):
                drop_redis_keys(settings, run.tag)
            shutil.rmtree(workdir, ignore_errors=True)
    return report(args, run, result, checked, counted, valid, malformed, replay_rate,
                  consume_rate)


def report(args: argparse.Namespace, run: Run, result: dict[str, Any], checked: dict[str, Any],
           counted: int, valid: int, malformed: int, replay_rate: float,
           consume_rate: float) -> int:
    samples: list[Sample] = result["samples"]
    done_at: dict[str, float] = result["done_at"]
    start = result["feed_start"]
    stages = result["stages"]
    last_stage = ("scored", "claims") if args.sentiment != "off" else ("claims",)
    full_done = max((done_at[k] for k in last_stage if k in done_at), default=None)
    finished = all(k in done_at for k in last_stage)
    fully = min(float(valid), *(stages.get(k, 0.0) for k in last_stage))
    end = full_done if finished and full_done else samples[-1].t + result["t0"]
    sustained = fully / (end - start) if end > start else float("nan")
    per_stage = {("clustered (claims committed)" if k == "claims" else k):
                 stages.get(k, 0.0) / (done_at.get(k, end) - start)
                 for k in ("enriched", *last_stage) if end > start}
    mood = checked["mood_lat"]
    enr = checked["enrich_lat"]
    p50 = pct(mood, .5) if mood else pct(enr, .5)
    p95 = pct(mood, .95) if mood else pct(enr, .95)
    rss = [round(x.rss_mb, 1) for x in samples]
    done = [int(min(x.claims_done, x.stages["scored"]) if args.sentiment != "off"
                else x.claims_done) for x in samples]
    growth, growth_quarter = memory_growth(rss)
    double = max(0, counted - checked["enriched_distinct"])
    ttl_min = run.settings.cluster_ttl_s / 60
    too_short = args.duration_minutes <= ttl_min
    bounded = None if too_short else memory_bounded(rss)
    feed_secs = result["feed_end"] - start
    offered = valid / feed_secs if feed_secs > 0 else float("nan")

    print()
    print("=" * 78)
    print(f"soak: {valid:,} generated posts ({args.scenario}) + {malformed:,} malformed, "
          f"1 worker{' (rumour stage in its own process)' if args.rumour_process else ''}, "
          f"full pipeline (sentiment {args.sentiment}, embedder {args.embedder}, "
          f"alerts {'-> Alertmanager' if args.alertmanager else 'off'}"
          f"{'; ' + ' '.join(args.worker_env) if args.worker_env else ''}); "
          f"{describe()}, load now {load()}")
    print(f"offered {offered:,.0f} posts/s (--rate {args.rate:,.0f}); fed in "
          f"{feed_secs:,.0f} s, done in {end - start:,.0f} s"
          + ("" if finished else "  ** NOT FINISHED (stalled/timeout) **"))
    print(f"{'':34s}{'posts/s':>10s}{'vs producer':>13s}{'vs raw consumer':>17s}")
    rows = [("producer alone (baseline)", replay_rate), ("raw consumer (baseline)", consume_rate),
            *((f"stage {k}", v) for k, v in per_stage.items()),
            ("sustained (scored AND clustered)", sustained)]
    for name, v in rows:
        print(f"{name:34s}{v:10,.0f}{v / replay_rate:13.3f}{v / consume_rate:17.3f}")
    print("latency from the raw record's Kafka timestamp, s "
          f"(sampled 1 in {max(1, valid // LATENCY_SAMPLES)} ids):")
    print(f"{'':34s}{'p50':>8s}{'p95':>8s}{'p99':>8s}{'n':>9s}")
    print(f"{'enriched output (posts.enriched)':34s}{pct(enr, .5):8.2f}{pct(enr, .95):8.2f}"
          f"{pct(enr, .99):8.2f}{len(enr):9,}")
    print(f"{'mood metric (posts.scored)':34s}{pct(mood, .5):8.2f}{pct(mood, .95):8.2f}"
          f"{pct(mood, .99):8.2f}{len(mood):9,}")
    b = result["buckets"]
    print(f"{'enrich histogram (/metrics)':34s}{histogram_pct(b, .5):8.2f}"
          f"{histogram_pct(b, .95):8.2f}{histogram_pct(b, .99):8.2f}"
          f"{b.get(float('inf'), 0):9,.0f}")
    print(f"claims lag (rumour stage) at the samples: max "
          f"{max(x.lag.get(run.settings.topic_claims, 0) for x in samples):,} records")
    print(f"lost {checked['lost']} (valid {checked['lost_valid']}, malformed "
          f"{checked['lost_malformed']}); distinct enriched {checked['enriched_distinct']:,} "
          f"+ dead-lettered {checked['dead_lettered_distinct']:,} of "
          f"{checked['raw_distinct']:,} + {checked['raw_malformed']:,}; re-sent outputs "
          f"{checked['enriched_records'] - checked['enriched_distinct']:,}; counted in Redis "
          f"{counted:,} (double counted {double}); official posts tracked "
          f"{stages['official_posts_tracked']:,.0f}; clustered posts (metric) "
          f"{stages['clustered']:,.0f}, rumour-stage recoveries "
          f"{stages['rumour_recoveries']:,.0f} ({stages['rumour_recovery_records']:,.0f} "
          "records replayed)")
    outages = result.get("metrics_outages", [])
    print(f"/metrics outages (a request failed or took > 10 s): {len(outages)}"
          + (f", longest {max(b - a for a, b in outages):.0f} s, at "
             + ", ".join(f"{a / 60:.1f} min" for a, _ in outages[:10]) if outages else ""))
    verdict = "bounded" if bounded else "GROWING" if bounded is not None \
        else "no verdict: run too short"
    print(f"worker RSS MB: start {rss[0]:,.0f}, peak {max(rss):,.0f}, end {rss[-1]:,.0f}; "
          f"growth over the last half {growth:+,.0f} MB, over the last quarter "
          f"{growth_quarter:+,.0f} MB ({verdict})")
    if args.duration_minutes <= ttl_min:
        print(f"  note: the posts span {args.duration_minutes:.0f} min of event time, less than "
              f"the cluster TTL ({ttl_min:.0f} min): the rumour stage's state cannot turn over, "
              "so this run cannot show bounded memory (the 1M default spans 720 min)")
    names = sorted({k for x in samples for k in x.parts})
    # per process: its RSS and anonymous RSS at every sample (0 where it was not running)
    own_rss = {k: [x.parts.get(k, (0.0, 0.0))[0] for x in samples] for k in names}
    own_anon = {k: [x.parts.get(k, (0.0, 0.0))[1] for x in samples] for k in names}
    print(f"{'minute':>8s}{'posts done':>12s}{'RSS MB':>9s}"
          + "".join(f"{k[:12] + ' RSS/anon':>22s}" for k in names))
    for i, (x, d) in enumerate(zip(samples, done, strict=True)):
        print(f"{x.t / 60:8.1f}{d:12,}{x.rss_mb:9,.0f}" + "".join(
            f"{own_rss[k][i]:13,.0f}{own_anon[k][i]:9,.0f}" for k in names))
    for k in names:
        half, quarter = memory_growth(own_rss[k])
        ahalf, aquarter = memory_growth(own_anon[k])
        print(f"  {k}: RSS growth over the last half {half:+,.0f} MB, last quarter "
              f"{quarter:+,.0f} MB; anonymous {ahalf:+,.0f} / {aquarter:+,.0f} MB")
    print(f"goal >= {GOAL_RATE:,.0f} posts/s per worker: "
          f"{'met' if sustained >= GOAL_RATE else 'NOT met'} ({sustained:,.0f})")
    print(f"goal p95 post-to-metric < {GOAL_P95_S:.0f} s: "
          f"{'met' if p95 < GOAL_P95_S else 'NOT met'} ({p95:.2f} s, mood path)")
    print(f"goal no loss: {'met' if checked['lost'] == 0 else 'NOT met'}; no unbounded memory "
          f"growth: {'met' if bounded else 'NOT met' if bounded is not None else 'n/a'} "
          f"({verdict})")

    if not args.no_record:
        record("soak", {
            "posts": valid, "malformed": malformed, "scenario": args.scenario,
            "pipeline": f"enrich, sentiment ({args.sentiment}), clustering ({args.embedder} "
                        f"embedder), reach, alerts"
                        f"{' -> Alertmanager' if args.alertmanager else ' (not pushed)'}"
                        f"{'; the rumour stage in its own process' if args.rumour_process else ''}",
            "workers": 1, "rate_offered": round(offered, 1), "finished": finished,
            "posts_per_s": round(sustained, 1), "replay_posts_per_s": round(replay_rate, 1),
            "raw_consume_posts_per_s": round(consume_rate, 1),
            "stage_posts_per_s": {k: round(v, 1) for k, v in per_stage.items()},
            "latency_p50_s": round(p50, 3), "latency_p95_s": round(p95, 3),
            "enrich_latency_p95_s": round(pct(enr, .95), 3),
            "lost": checked["lost"], "double_counted": double,
            "rss_mb": rss, "done": done, "sample_every_s": args.sample_every,
            "rss_read_every_s": MEMORY_READ_EVERY_S,
            "minutes": [round(x.t / 60, 1) for x in samples],
            "rss_growth_last_half_mb": round(growth, 1),
            "rss_growth_last_quarter_mb": round(growth_quarter, 1), "memory_verdict": verdict,
            "memory_rule": {"slack_mb": MEMORY_SLACK_MB, "slack_share": MEMORY_SLACK_SHARE},
            "rss_by_process_mb": {k: [round(v, 1) for v in own_rss[k]] for k in names},
            "anon_rss_by_process_mb": {k: [round(v, 1) for v in own_anon[k]] for k in names},
            # % of one core over each interval between two samples
            "cpu_percent_by_process": {
                k: [round(cpu_percent(a, b).get(k, 0.0), 1)
                    for a, b in itertools.pairwise(samples)] for k in names},
            "event_minutes": args.duration_minutes, "load": load(),
            "cores": os.cpu_count(), "cpu": describe(), "seconds": round(end - start, 1),
            "worker_env": args.worker_env,
            "metrics_outages": len(outages),
            "metrics_outage_longest_s": round(max((b - a for a, b in outages), default=0.0),
                                              1),
        })
        render()
    ok = finished and checked["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
