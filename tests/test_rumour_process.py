"""The worker's roles (``worker_role``) and its rumour process (``streams.rumour_process``)
without Kafka; the two processes on the real stack: tests/integration/test_rumour_process.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from models.event import load_event
from streams.app import Pipeline
from streams.rumour_process import PARENT_ENV, RumourProcess, child_env
from streams.rumours import tracker_from
from streams.runtime import PACKAGED_EVENT
from streams.settings import Settings
from streams.state import MemoryStore


def _settings(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("app_id", f"test-{tmp_path.name}")
    return Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path,
                    cluster_embedder="hashing", **values)


def _pipeline(settings: Settings, *, tracker: bool) -> Pipeline:
    event = load_event(PACKAGED_EVENT)
    return Pipeline(settings, store=MemoryStore(), registry=CollectorRegistry(), event=event,
                    tracker=tracker_from(settings, event) if tracker else None,
                    web_enabled=False)


def test_the_default_role_runs_every_stage_in_one_process(tmp_path: Path) -> None:
    p = _pipeline(_settings(tmp_path), tracker=True)
    assert {"crowdwatch.enrich", "crowdwatch.rumours"} <= set(p.app.agents)
    assert p.rumours is not None and p.feeds_claims
    # no sentiment: enrichment writes the rumour stage's input
    assert p.processor.topic_claims == p.settings.topic_claims


def test_the_ingest_role_feeds_posts_claims_but_runs_no_rumour_stage(tmp_path: Path) -> None:
    p = _pipeline(_settings(tmp_path, worker_role="ingest"), tracker=True)
    assert "crowdwatch.enrich" in p.app.agents
    assert "crowdwatch.rumours" not in p.app.agents
    assert p.rumours is None and p.feeds_claims
    assert p.processor.topic_claims == p.settings.topic_claims


def test_the_ingest_role_writes_no_claims_when_rumours_are_off(tmp_path: Path) -> None:
    p = _pipeline(_settings(tmp_path, worker_role="ingest", rumours_enabled=False),
                  tracker=False)
    assert not p.feeds_claims and p.processor.topic_claims is None


def test_the_rumours_role_runs_only_the_rumour_stage(tmp_path: Path) -> None:
    p = _pipeline(_settings(tmp_path, worker_role="rumours"), tracker=True)
    assert "crowdwatch.rumours" in p.app.agents
    assert "crowdwatch.enrich" not in p.app.agents
    assert "crowdwatch.sentiment" not in p.app.agents
    assert p.rumours is not None and not p.feeds_claims and p.scorer is None
    with pytest.raises(ValueError, match="tracker"):
        _pipeline(_settings(tmp_path / "x", worker_role="rumours"), tracker=False)


def _series(registry: CollectorRegistry, family: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() if m.name == family for s in m.samples
            if s.name.endswith("_total")]


def test_only_the_ingest_side_exports_the_zero_post_count_series(tmp_path: Path) -> None:
    """The rumour process reads posts.claims, not posts.raw: it exports no per-reason,
    per-area or per-topic post counts at 0 beside the ingest side's, so a query or alert
    grouped by instance never sees a rumour process that 'rejects nothing' or 'has no
    safety posts'. Its rumour series are warm there, and only there."""
    ingest = _pipeline(_settings(tmp_path / "i", worker_role="ingest"), tracker=True)
    rumours = _pipeline(_settings(tmp_path / "r", worker_role="rumours"), tracker=True)
    for family in ("crowdwatch_posts_rejected", "crowdwatch_posts_by_area",
                   "crowdwatch_posts_by_topic", "crowdwatch_safety_posts"):
        assert _series(ingest.registry, family), family
        assert not _series(rumours.registry, family), family
    assert rumours.registry.get_sample_value("crowdwatch_rumour_flagged_clusters",
                                             {"event": rumours.event_name}) == 0
    assert ingest.registry.get_sample_value("crowdwatch_rumour_flagged_clusters",
                                            {"event": ingest.event_name}) is None


def test_the_child_gets_its_own_role_group_and_port(tmp_path: Path) -> None:
    event = tmp_path / "event.yaml"
    s = _settings(tmp_path, app_id="cp-amsterdam", web_port=7000, rumour_process=True,
                  event_file=event)
    env = child_env(s, {"CROWDWATCH_APP_ID": "other", "PATH": "/bin"})
    assert env["CROWDWATCH_WORKER_ROLE"] == "rumours"
    assert env["CROWDWATCH_RUMOUR_PROCESS"] == "false"  # no grandchild
    assert env["CROWDWATCH_APP_ID"] == "cp-amsterdam-rumours" == s.rumour_app_id
    assert env["CROWDWATCH_WEB_PORT"] == "7001" == str(s.rumour_port)
    assert env["CROWDWATCH_EVENT_FILE"] == str(event)
    assert env["PATH"] == "/bin"
    assert env[PARENT_ENV] == str(os.getpid())  # the child watches this worker
    assert _settings(tmp_path, web_port=7000, rumour_web_port=9100).rumour_port == 9100


_HANGS_ON_SIGTERM = """
import signal, sys, time
from streams.rumour_process import watch_parent
signal.signal(signal.SIGTERM, lambda *a: print("sigterm", flush=True))  # a stop that hangs
watch_parent(int(sys.argv[1]), grace_s=1.0, every_s=0.05)
time.sleep(60)
"""


@pytest.mark.parametrize("parent", ["alive", "gone"])
def test_the_child_ends_when_its_worker_is_gone_even_if_its_stop_hangs(parent: str) -> None:
    """Should the kernel's parent-death signal not come, or the graceful stop hang, the
    rumour process still ends: its watcher sees the worker gone, sends SIGTERM and exits
    hard a grace period later (a full-suite run once saw a child outlive its killed
    worker by more than 60 s)."""
    watched = os.getpid() if parent == "alive" else 1  # "gone": not our parent
    proc = subprocess.Popen([sys.executable, "-c", _HANGS_ON_SIGTERM, str(watched)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if parent == "alive":
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # its worker (this test) lives: it keeps running
        proc.kill()
        proc.wait()
        return
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err.decode()[-2000:]
    assert out.decode().split() == ["sigterm"]
    assert b"is gone" in err and b"exiting" in err


@pytest.mark.parametrize("nice", [0, 5])
def test_the_child_runs_at_the_configured_niceness(tmp_path: Path, nice: int) -> None:
    """The mood path keeps priority when the cores are saturated: the rumour process runs
    ``rumour_process_nice`` steps below the worker."""
    out = tmp_path / "nice.txt"

    class Probe(RumourProcess):
        def command(self) -> list[str]:  # the real start path, a probe instead of a worker
            return [sys.executable, "-c",
                    f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(str(os.nice(0)))"]

    probe = Probe(_settings(tmp_path, rumour_process=True, rumour_process_nice=nice))
    probe.start()
    assert probe.proc is not None and probe.proc.wait(timeout=30) == 0
    assert int(out.read_text()) == min(19, os.nice(0) + nice)


@pytest.fixture
def ended() -> subprocess.Popen[bytes]:
    """A child process that has ended with exit code 3."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait()
    return proc


@pytest.mark.asyncio
async def test_the_worker_stops_when_its_rumour_process_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ended: subprocess.Popen[bytes]) -> None:
    p = _pipeline(_settings(tmp_path, worker_role="ingest", rumour_process=True),
                  tracker=False)
    child = RumourProcess(p.settings)
    child.proc = ended
    p.watch_child(child)
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    monkeypatch.setattr(p.app, "crash", crash)
    assert await p.check_child()
    assert crashed and "exit code 3" in str(crashed[0])
    assert child.stop() == 3  # already ended: nothing to signal
