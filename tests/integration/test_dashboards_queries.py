"""Every Prometheus query of every generated dashboard, run against the real Prometheus of
the local stack while a real worker processes generated ``rumour-rebuttal`` traffic: no
query errors, no empty panels.

Test settings (restored afterwards, also on failure): Prometheus scrapes and evaluates every
1 s with the production rules (so ``ALERTS`` holds real firing alerts) and targets only this
worker. The event name is unique per run, so series of earlier runs do not mix in. The
worker scores mood with the tiny test model (tests/tiny_model.py) so the mood panels have
data. The Infinity (worker API) tables are not checked here.

The command post's Coverage row reads the live connectors' metrics (job
``crowdwatch-ingest``): a real ``crowdwatch ingest bluesky`` runs against the loopback
Jetstream stand-in of ``streams.ingest.fakes`` (its synthetic firehose) and Prometheus
scrapes its ``--metrics-port`` for the test. It starts before the stand-in, so Prometheus
sees its counters at 0 before the events arrive and ``rate()`` has a rise to measure.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import generate
from models.event import load_event
from models.generate import DEFAULT_EVENT_PATH
from streams import stack
from streams.embedded import free_port
from tests.integration.conftest import REPO, run_cli, wait_for

RATE_INTERVAL = "1m"
RANGE = "15m"
#: Synthetic Jetstream frames the stand-in serves to the connector.
JETSTREAM_FRAMES = 3000
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")


def _running_config() -> stack.StackConfig:
    saved = stack.StackConfig.from_env().saved_config_file
    if saved.is_file():
        return stack.StackConfig.from_json(saved.read_text(encoding="utf-8"))
    return stack.StackConfig.from_env()


def _get(cfg: stack.StackConfig, path: str, params: list[tuple[str, str]]) -> Any:
    url = (f"http://127.0.0.1:{cfg.prometheus_port}{path}?" + urllib.parse.urlencode(params))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    return body


def _query(cfg: stack.StackConfig, expr: str) -> dict[str, Any]:
    return dict(_get(cfg, "/api/v1/query", [("query", expr)]))


def _result(cfg: stack.StackConfig, expr: str) -> list[dict[str, Any]]:
    body = _query(cfg, expr)
    assert body.get("status") == "success", (expr, body)
    return list(body["data"]["result"])


def _finite(result: list[dict[str, Any]]) -> list[float]:
    values = [float(s["value"][1]) for s in result]
    return [v for v in values if math.isfinite(v)]


def _substitute(expr: str, values: dict[str, str]) -> str:
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    out = out.replace("$__interval", "15s")
    for name in sorted(values, key=len, reverse=True):
        out = out.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in out, out
    return out


def _panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) of every Prometheus target."""
    out = []
    for doc in generate.dashboards().values():
        for panel in generate.iter_panels(doc):
            for target in panel.get("targets") or ():
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("uid") == generate.PROMETHEUS_UID:
                    out.append((doc["uid"], panel["title"], target["expr"]))
    return out


def _variable_queries() -> list[tuple[str, str, str]]:
    out = []
    for doc in generate.dashboards().values():
        for var in doc.get("templating", {}).get("list", []):
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((doc["uid"], var["name"], query))
    return out


@pytest.fixture
def fast_prometheus() -> Iterator[stack.StackConfig]:
    cfg = _running_config()
    prom_yml = cfg.service_dir("prometheus") / "prometheus.yml"
    fast = yaml.safe_load(stack.render_prometheus_config(replace(cfg, scrape_interval="1s")))
    try:
        prom_yml.write_text(json.dumps(fast, indent=2), encoding="utf-8")
        stack.reload_prometheus(cfg)
        yield cfg
    finally:
        stack.set_worker_targets(cfg.worker_targets, cfg)
        stack.set_connector_targets(stack.CONNECTOR_TARGETS, cfg)
        prom_yml.write_text(stack.render_prometheus_config(cfg), encoding="utf-8")
        stack.reload_prometheus(cfg)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def live_connector(cfg: stack.StackConfig, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A real Bluesky connector (``crowdwatch ingest bluesky --out``) for the loopback
    Jetstream stand-in, scraped by Prometheus as job ``crowdwatch-ingest``. Yields once
    Prometheus has its counters at 0; the function yielded starts the stand-in (the
    synthetic firehose), waits until Prometheus saw it received and produced, and returns
    the connector's instance. Late, so ``rate()`` over a minute still sees the rise."""
    js_port, metrics_port = free_port(), free_port()
    target = f"127.0.0.1:{metrics_port}"
    sel = f'{{job="crowdwatch-ingest", instance="{target}"}}'
    env = {**os.environ, "CROWDWATCH_INGEST_STATE_DIR": str(tmp_path / "ingest-state"),
           "CROWDWATCH_INGEST_BACKOFF_MAX_S": "1"}
    logs = tmp_path / "connector.log"
    procs: list[subprocess.Popen[bytes]] = []

    def feed() -> str:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "streams.ingest.fakes", "jetstream", "--frames",
             str(JETSTREAM_FRAMES), "--port", str(js_port), "--protocol", "v1"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert wait_for(lambda: _finite(_result(
            cfg, f"sum(crowdwatch_ingest_events_received_total{sel}) >= {JETSTREAM_FRAMES}")),
            60), f"the connector did not receive the frames: {logs.read_text()}"
        # produced moves at the connector's checkpoints (every 2 s)
        assert wait_for(lambda: _finite(_result(
            cfg, f"crowdwatch_ingest_events_produced_total{sel} > 0")), 30), logs.read_text()
        assert _result(cfg, f"crowdwatch_ingest_connected{sel} == 1"), logs.read_text()
        return target

    with logs.open("wb") as log:
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "ingest", "bluesky",
                 "--endpoint", f"ws://127.0.0.1:{js_port}", "--metrics-port",
                 str(metrics_port), "--out", str(tmp_path / "capture.jsonl"), "--no-cursor",
                 "--no-resolve", "--duration", "900"],
                cwd=REPO, env=env, stdout=log, stderr=log))
            stack.set_connector_targets([target], cfg)
            # its counters at 0 first (no stand-in yet: the connector keeps retrying)
            assert wait_for(lambda: _result(cfg, f"crowdwatch_ingest_events_received_total{sel}"),
                         30), f"Prometheus did not scrape the connector: {logs.read_text()}"
            yield feed
        finally:
            for proc in reversed(procs):
                _stop(proc)


@pytest.fixture
def feed_connector(fast_prometheus: stack.StackConfig, tmp_path: Path
                   ) -> Iterator[Callable[[], str]]:
    with live_connector(fast_prometheus, tmp_path) as feed:
        yield feed


@pytest.mark.slow
def test_every_dashboard_query_returns_data(fast_prometheus: stack.StackConfig,
                                           feed_connector: Callable[[], str],
                                           worker_factory: Any, tmp_path: Path) -> None:
    from tests.tiny_model import build_tiny_model

    cfg = fast_prometheus
    event = f"dash-{uuid.uuid4().hex[:8]}"
    event_file = tmp_path / "event.yaml"
    event_file.write_text(DEFAULT_EVENT_PATH.read_text(encoding="utf-8").replace(
        "name: koningsdag-amsterdam", f"name: {event}", 1), encoding="utf-8")
    assert load_event(event_file).name == event

    w = worker_factory(event=event_file, sentiment_model=str(build_tiny_model(tmp_path / "m")),
                       mood_min_posts=5)
    w.start()
    w.wait_ready()
    target = f"127.0.0.1:{w.settings.web_port}"
    stack.set_worker_targets([target], cfg)
    sel = f'{{event="{event}", instance="{target}"}}'
    assert wait_for(lambda: _result(cfg, f"crowdwatch_posts_by_area_total{sel}"), 30), \
        "Prometheus did not scrape the worker"
    time.sleep(3)  # a few scrapes of the zero counters, so rate() sees the rise

    out = tmp_path / "traffic"
    gen = run_cli("generate", "--scenario", "rumour-rebuttal", "--seed", "7", "--posts", "1500",
                  "--out", str(out), env={**os.environ})
    assert gen.returncode == 0, gen.stderr
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    rep = run_cli("replay", str(out / "posts.jsonl"), "--max-rate", "60", "--topic",
                  w.settings.topic_raw, env=w.env)
    assert rep.returncode == 0, rep.stderr
    # the worker has caught up (every record read) and Prometheus saw it
    assert wait_for(lambda: _finite(_result(
        cfg, f'sum(crowdwatch_posts_consumed_total{{instance="{target}"}}) >= 1500')), 60)
    # linked rebuttal races and firing alerts are the slowest series to appear
    assert wait_for(lambda: _result(cfg, f'crowdwatch_rebuttal_reach_ratio{{event="{event}"}}'),
                 60), "no rebuttal was linked"
    assert wait_for(lambda: _result(cfg, f'ALERTS{{alertstate="firing", event="{event}"}}'),
                 30), "no alert rule fired for the event"
    time.sleep(2)

    feed_connector()  # the live connector's firehose, just before the queries
    area = truth["safety_burst"]["area"]
    (top,) = _result(cfg, f'topk(1, sum by (topic) (crowdwatch_mood_posts_total{{'
                          f'event="{event}", area="{area}", topic!="none"}}))')
    topic = top["metric"]["topic"]
    chosen = {"event": event, "area": area, "topic": topic, "instance": target}
    everything = {"event": event, "area": ".*", "topic": ".*", "instance": ".*"}

    # the variables offer these values
    for uid, name, query in _variable_queries():
        m = LABEL_VALUES.match(query)
        assert m, (uid, name, query)
        params = [("match[]", _substitute(m["match"], chosen))] if m["match"] else []
        body = _get(cfg, f"/api/v1/label/{m['label']}/values", params)
        assert body.get("status") == "success", (uid, name, body)
        assert chosen[name] in body["data"], (uid, name, chosen[name], body["data"])

    queries = _panel_queries()
    assert len(queries) >= 40
    failures = []
    for values in (chosen, everything):
        for uid, title, expr in queries:
            q = _substitute(expr, values)
            body = _query(cfg, q)
            if body.get("status") != "success":
                failures.append(f"{uid} / {title}: error {body.get('error')}: {q}")
            elif not _finite(body["data"]["result"]):
                failures.append(f"{uid} / {title}: no series with a value: {q}")
    print(f"\n{len(queries)} panel queries x 2 variable sets on event {event}, area {area}, "  # noqa: T201
          f"topic {topic}: {len(failures)} failure(s)")
    assert not failures, "\n".join(failures)
