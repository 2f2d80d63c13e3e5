"""Fixtures for tests on the real local stack (`crowdwatch stack up`): workers as real
processes, each test with its own consumer group and topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.embedded import free_port
from streams.kafka_admin import ensure_topics
from streams.settings import Settings, load_settings, stack_file

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


def wait_for(check: Any, timeout: float = 90.0, every: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy or ``timeout`` passes; return its
    last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    return value


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.skipif(
                not stack_file().is_file(),
                reason=f"local stack not up ({stack_file()} missing): run `crowdwatch stack up`"))


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    return load_settings()


@dataclass
class Worker:
    """A `crowdwatch worker` process with its own topics and consumer group."""

    settings: Settings
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:  # noqa: S310
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                status, body = self.get("/health")
                data = json.loads(body)
                if status == 200 and data.get("assigned_partitions"):
                    return dict(data)
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += s.value
        return total

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker_factory(stack_settings: Settings, tmp_path: Path) -> Iterator[Any]:
    started: list[Worker] = []

    def make(event: Path | None = None, **overrides: Any) -> Worker:
        tag = f"it-{uuid.uuid4().hex[:10]}"
        values: dict[str, Any] = {
            "app_id": tag, "topic_raw": f"{tag}.raw", "topic_enriched": f"{tag}.enriched",
            "topic_deadletter": f"{tag}.deadletter", "topic_scored": f"{tag}.scored",
            "topic_signals": f"{tag}.signals", "topic_claims": f"{tag}.claims",
            "topic_cluster_events": f"{tag}.clusters", "cluster_embedder": "hashing",
            "web_port": free_port(),
            "broker_session_timeout": 6.0, "data_dir": tmp_path / "data", "batch_within": 0.05,
            "redis_prefix": tag, "sentiment_model": "off",
        }
        values.update(overrides)
        settings = stack_settings.model_copy(update=values)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDWATCH_")}
        env["CROWDWATCH_STACK_FILE"] = str(stack_file())
        for key, value in values.items():
            env[f"CROWDWATCH_{key.upper()}"] = str(value)
        if event is not None:
            env["CROWDWATCH_EVENT_FILE"] = str(event)
        ensure_topics(settings)
        w = Worker(settings, env, tmp_path / f"{tag}.log")
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()
    from streams.kafka_admin import delete_topics

    for w in started:  # a broker with thousands of topics restarts slowly: clean up
        s = w.settings
        try:
            delete_topics(s, [s.topic_raw, s.topic_enriched, s.topic_deadletter, s.topic_scored,
                              s.topic_signals, s.topic_claims, s.topic_cluster_events])
        except Exception as exc:  # cleanup only: never fail a test for it
            print(f"could not delete the test's topics: {exc}")  # noqa: T201


def consume_all(settings: Settings, topics: list[str], expected: int, timeout: float = 90
                ) -> list[Any]:
    """Read ``topics`` from the beginning until ``expected`` records (or timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(*topics, group_id=f"check-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000, **settings.kafka_client_kwargs())
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                out.extend(batch)
    finally:
        consumer.close()
    return out


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
