"""Faults injected into the real local stack while a replay is running: a worker killed
with SIGKILL and restarted, two workers of which one is killed (rebalance), Kafka restarted,
Redis restarted (it runs without persistence, so it comes back empty).

After each: every record is accounted for (enriched or dead-lettered, by post id and by
source offset), the event's counts in Redis equal the counts of an offline run over the
same input (idempotent by post id), and the figures go to the reliability report
(tests/reliability_report.py renders it into docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from models.enrich import Enricher, RawRecord, summarize
from models.event import load_event
from models.generate import iter_generate, write_traffic
from streams import stack
from streams.runtime import PACKAGED_EVENT
from streams.state import MemoryStore, RedisStore
from tests.integration.conftest import REPO, Worker, consume_all, wait_for
from tests.reliability_report import record

EVENT = "koningsdag-amsterdam"
RATE = 800.0  # posts/s of the replay: slow enough to hit it mid-stream

pytestmark = pytest.mark.slow

MALFORMED = [b"{not json", b'["list"]', b'{"text": "geen id"}', b'{"id": "", "text": "x"}',
             b'{"id": "m-t", "text": 5}', b'{"id": "m-u", "text": "caf\xe9"}', b"{}"]


@dataclass
class Expected:
    path: Path
    records: int
    ids: set[str]
    dead: int
    counts: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _traffic(tmp_path: Path, n_posts: int, seed: int) -> Expected:
    """Generated traffic with malformed records mixed in, and what an offline run makes of it
    (the enriched ids, the number of dead letters and the counts)."""
    stream = iter_generate("rumour-rebuttal", seed=seed, n_posts=n_posts)
    posts_path, truth_path = write_traffic(stream, tmp_path / f"traffic-{seed}")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    lines = [ln for ln in posts_path.read_bytes().split(b"\n") if ln]
    for i, bad in enumerate(MALFORMED * 3):  # spread through the file
        lines.insert((i + 1) * len(lines) // (len(MALFORMED) * 3 + 1), bad)
    path = tmp_path / f"faults-{seed}.posts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    enricher = Enricher(load_event(PACKAGED_EVENT))
    result = enricher.process([RawRecord(ln, {"topic": "t", "partition": 0, "offset": i})
                               for i, ln in enumerate(lines)])
    store = MemoryStore()
    asyncio.run(store.record_batch(EVENT, [summarize(e, 0.0) for e in result.enriched]))
    return Expected(path, len(lines), {e.id for e in result.enriched}, len(result.dead),
                    asyncio.run(store.counts(EVENT)), {"truth": truth})


class Replay:
    """`crowdwatch replay --max-rate` in the background; its output goes to a file."""

    def __init__(self, worker: Worker, path: Path, rate: float = RATE) -> None:
        self.log = path.with_suffix(".replay.log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "replay", str(path), "--max-rate",
                 str(rate)], cwd=REPO, env=worker.env, stdout=out, stderr=subprocess.STDOUT)

    def finish(self, timeout: float = 120) -> None:
        code = self.proc.wait(timeout=timeout)
        assert code == 0, self.log.read_text(errors="replace")[-3000:]


def _replay(worker: Worker, path: Path) -> Replay:
    return Replay(worker, path)


def _redis(worker: Worker, call: str, *args: Any) -> Any:
    s = worker.settings

    async def read() -> Any:
        store = RedisStore(s.redis_url.get_secret_value(), prefix=s.redis_prefix)
        try:
            return await getattr(store, call)(worker.extra.get("event", EVENT), *args)
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except Exception:  # Redis restarting: the caller polls again
        return None


def _counts(worker: Worker) -> dict[str, Any] | None:
    out: dict[str, Any] | None = _redis(worker, "counts")
    return out


def _account(worker: Worker, exp: Expected, fault: str, started: float,
             details: dict[str, Any]) -> None:
    """Wait until the counts settle, then check every record and the aggregates."""
    s = worker.settings
    settled = wait_for(lambda: (c := _counts(worker)) is not None and c == exp.counts,
                       timeout=240, every=1.0)
    recovered_s = time.monotonic() - started
    out = consume_all(s, [s.topic_enriched, s.topic_deadletter], len(exp.ids) + exp.dead,
                      timeout=60)
    enriched = Counter(r.key.decode() for r in out if r.topic == s.topic_enriched)
    dead_offsets = Counter((json.loads(r.value)["source"]["partition"],
                            json.loads(r.value)["source"]["offset"])
                           for r in out if r.topic == s.topic_deadletter)
    lost = len(exp.ids - set(enriched))
    unexpected = len(set(enriched) - exp.ids)
    dup_outputs = sum(n - 1 for n in enriched.values()) + sum(n - 1 for n in
                                                              dead_offsets.values())
    counts = _counts(worker) or {}
    record("faults", {"fault": fault,
        "records": exp.records, "valid": len(exp.ids), "malformed": exp.dead,
        "enriched_distinct": len(enriched), "dead_lettered_distinct": len(dead_offsets),
        "lost": lost + max(0, exp.dead - len(dead_offsets)),
        "duplicate_outputs": dup_outputs,
        "counts_exact": counts == exp.counts,
        "posts_counted": counts.get("posts"), "posts_expected": exp.counts["posts"],
        "seconds_to_exact_counts": round(recovered_s, 1), **details,
    })
    assert lost == 0 and unexpected == 0, (lost, unexpected)
    assert len(dead_offsets) == exp.dead
    assert settled, f"counts never matched: {counts.get('posts')} vs {exp.counts['posts']}"
    assert counts == exp.counts  # every area/topic/keyword/lang/kind count, exactly


def _wait_consumed(worker: Worker, n: float, timeout: float = 120) -> float:
    value: float = wait_for(lambda: (v := worker.metric("crowdwatch_posts_consumed_total")) >= n
                            and v, timeout=timeout, every=0.2)
    return value


def test_a_worker_killed_mid_replay_and_restarted_loses_and_double_counts_nothing(
    worker_factory: Any, tmp_path: Path,
) -> None:
    exp = _traffic(tmp_path, 6000, seed=31)
    event_name = f"faults-{uuid.uuid4().hex[:8]}"  # Alertmanager holds only this run's alerts
    event_file = tmp_path / "event.yaml"
    event_file.write_text(PACKAGED_EVENT.read_text(encoding="utf-8").replace(
        "name: koningsdag-amsterdam", f"name: {event_name}", 1), encoding="utf-8")
    w: Worker = worker_factory(event=event_file)
    w.extra["event"] = event_name
    w.env.update({"CROWDWATCH_ALERTS_TICK_S": "0.25", "CROWDWATCH_ALERTS_UPDATE_S": "2"})
    w.start()
    w.wait_ready()
    replay = _replay(w, exp.path)
    started = time.monotonic()
    before = _wait_consumed(w, exp.records * 0.3)
    w.stop(signal.SIGKILL)
    w.start()  # same group, same topics: a restart after a crash
    w.wait_ready(timeout=120)
    replay.finish()
    reach_ok = _reach_matches(w, exp)
    alerts = _alerts_match_clusters(w)
    _account(w, exp, "worker SIGKILL mid-replay, restarted",
             started, {"consumed_before_kill": int(before), "official_reach_exact": reach_ok,
                       "rumour_stage_rebuilds": w.metric("crowdwatch_rumour_recoveries_total"),
                       "rumour_alerts_in_alertmanager": len(alerts[0]),
                       "alerts_without_a_flagged_cluster": len(alerts[0] - alerts[1])})
    assert reach_ok, "reach of official posts differs from the truth after the restart"
    assert alerts[0] == alerts[1], "Alertmanager's rumour alerts differ from the flagged clusters"


def _alerts_match_clusters(w: Worker) -> tuple[set[str], set[str]]:
    """(clusters with an active RumourClusterFlagged alert in Alertmanager, flagged and not
    resolved clusters in Redis), once they agree or after a minute: a restarted worker that
    re-pushed its alerts under new cluster ids would leave extra alerts behind."""
    am = w.settings.alertmanager_url.rstrip("/")
    event = w.extra["event"]

    def both() -> tuple[set[str], set[str]]:
        query = urllib.parse.urlencode([("filter", f'event="{event}"'),
                                        ("filter", 'alertname="RumourClusterFlagged"')])
        with urllib.request.urlopen(f"{am}/api/v2/alerts?{query}", timeout=5) as r:  # noqa: S310
            active = {a["labels"]["cluster"] for a in json.load(r)}
        snaps = _redis(w, "top_clusters", 100_000) or []
        flagged = {c["id"] for c in snaps if c.get("flagged") and c.get("state") != "resolved"}
        return active, flagged

    result: tuple[set[str], set[str]] = wait_for(
        lambda: (pair := both()) and pair[0] == pair[1] and pair[0] and pair, timeout=60) \
        or both()
    return result


def _reach_matches(w: Worker, exp: Expected) -> bool:
    """Wait until Redis holds the exact reach of every official post (rebuilt by the
    restarted worker's rumour stage from posts.claims)."""
    want = {o["id"]: (o["reposts"], o["replies"], o["quotes"])
            for o in exp.extra["truth"]["official_posts"]}

    def exact() -> bool:
        docs = _redis_docs(w, "official_posts") or {}
        return all((docs.get(k, {}).get("reposts", 0), docs.get(k, {}).get("replies", 0),
                    docs.get(k, {}).get("quotes", 0)) == v for k, v in want.items())

    return bool(want) and bool(wait_for(exact, timeout=120, every=1.0))


def _redis_docs(worker: Worker, kind: str) -> dict[str, Any] | None:
    s = worker.settings

    async def read() -> dict[str, Any]:
        store = RedisStore(s.redis_url.get_secret_value(), prefix=s.redis_prefix)
        try:
            return await store.get_docs(worker.extra.get("event", EVENT), kind)
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except Exception:
        return None


def test_two_workers_one_killed_the_other_takes_over(worker_factory: Any,
                                                    tmp_path: Path) -> None:
    exp = _traffic(tmp_path, 6000, seed=32)
    a: Worker = worker_factory(event=PACKAGED_EVENT)
    b = Worker(a.settings.model_copy(update={"web_port": _free_port()}),
               {**a.env}, tmp_path / "b.log")
    b.env["CROWDWATCH_WEB_PORT"] = str(b.settings.web_port)
    a.start()
    b.start()
    try:
        a.wait_ready()
        b.wait_ready()
        assert wait_for(lambda: len(_partitions(a)) + len(_partitions(b))
                        == a.settings.topic_partitions, timeout=60), "no 2-way split"
        split = (len(_partitions(a)), len(_partitions(b)))
        replay = _replay(a, exp.path)
        started = time.monotonic()
        _wait_consumed(b, exp.records * 0.15)
        b.stop(signal.SIGKILL)
        assert wait_for(lambda: len(_partitions(a)) == a.settings.topic_partitions,
                        timeout=90), "the survivor never took over every partition"
        took_over_s = time.monotonic() - started
        replay.finish()
        _account(a, exp, "two workers, one SIGKILLed (rebalance)", started,
                 {"partitions_before": list(split), "seconds_until_rebalanced":
                  round(took_over_s, 1)})
    finally:
        b.stop()


def test_kafka_restarted_mid_replay(worker_factory: Any, tmp_path: Path) -> None:
    exp = _traffic(tmp_path, 5000, seed=33)
    w: Worker = worker_factory(event=PACKAGED_EVENT)
    w.start()
    w.wait_ready()
    replay = _replay(w, exp.path)
    started = time.monotonic()
    _wait_consumed(w, exp.records * 0.3)
    t0 = time.monotonic()
    stack.restart_service("kafka")
    kafka_down_s = time.monotonic() - t0
    replay.finish(timeout=300)  # its producer waits for the broker to come back
    assert w.proc is not None and w.proc.poll() is None, "the worker died with Kafka"
    _account(w, exp, "Kafka restarted mid-replay", started,
             {"kafka_restart_s": round(kafka_down_s, 1)})


def test_redis_restarted_empty_mid_replay_state_is_rebuilt_from_kafka(
    worker_factory: Any, tmp_path: Path,
) -> None:
    exp = _traffic(tmp_path, 6000, seed=34)
    w: Worker = worker_factory(event=PACKAGED_EVENT)
    w.start()
    w.wait_ready()
    replay = _replay(w, exp.path)
    started = time.monotonic()
    _wait_consumed(w, exp.records * 0.4)
    # a check that was running when Redis died finishes or retries later: count the
    # rebuilds done before the kill so that only one after it is required
    rebuilds_before = w.metric("crowdwatch_state_rebuilds_total", {"outcome": "done"})
    stack.kill_service("redis", signal.SIGKILL)
    time.sleep(3)  # the worker keeps consuming; its store writes wait
    stack.restart_service("redis")
    after = _counts(w) or {}
    replay.finish()
    assert w.proc is not None and w.proc.poll() is None, "the worker died with Redis"
    _account(w, exp, "Redis SIGKILLed mid-replay, restarted empty", started,
             {"posts_in_redis_right_after_restart": after.get("posts", 0)})
    # the counts are exact once posts.enriched is recounted; the rebuild then re-marks
    # posts.scored before it counts itself done
    assert wait_for(lambda: w.metric("crowdwatch_state_rebuilds_total",
                                     {"outcome": "done"}) >= rebuilds_before + 1,
                    timeout=120)
    assert w.metric("crowdwatch_state_store_unavailable_total") > 0


def _partitions(w: Worker) -> list[str]:
    try:
        _, body = w.get("/health")
        return [p for p in json.loads(body).get("assigned_partitions", [])
                if p.startswith(w.settings.topic_raw + "/")]
    except (OSError, ValueError):
        return []


def _free_port() -> int:
    from streams.embedded import free_port

    return free_port()
