"""Alerts end to end on the real local stack: generated traffic with a crowd-safety burst
-> `crowdwatch replay` -> a real worker -> (a) its event-alerts agent pushing to
Alertmanager and (b) Prometheus scraping it and evaluating the rules -> Alertmanager ->
a loopback webhook receiver in this test.

Test settings (restored afterwards, also on failure): Prometheus scrapes and evaluates
every 1 s with the FAST rules (`dashboards.alerts.FAST`: short windows, `for: 0s`) and
targets only this worker; Alertmanager runs a copy of deploy/alertmanager/alertmanager.yml
whose generic webhook points at the receiver (CROWDWATCH_STACK_ALERTMANAGER_CONFIG).
The event name is unique per run, so Alertmanager's notification log of earlier runs and
other tests' alerts do not mix in.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from dashboards import alerts as rules_gen
from models.enrich import Enricher, RawRecord
from models.event import load_event
from models.generate import DEFAULT_EVENT_PATH
from streams import stack
from tests.integration.conftest import REPO, consume_all, run_cli
from tests.loopback import Handler, LoopbackServer

PLACEHOLDER_WEBHOOK = "http://127.0.0.1:9/crowdwatch-webhook"


class Receiver(LoopbackServer):
    """A webhook receiver on 127.0.0.1: records (arrival time, JSON body)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", "/hook", self._hook)]

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((time.time(), await request.json()))
        return web.Response(text="ok")

    def notifications(self, alertname: str, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, b) for t, b in self.received
                if b.get("groupLabels", {}).get("alertname") == alertname
                and b.get("commonLabels", {}).get("event") == event]


def _running_config() -> stack.StackConfig:
    saved = stack.StackConfig.from_env().saved_config_file
    if saved.is_file():
        return stack.StackConfig.from_json(saved.read_text(encoding="utf-8"))
    return stack.StackConfig.from_env()


def _prom_query(cfg: stack.StackConfig, query: str) -> list[dict[str, Any]]:
    url = (f"http://127.0.0.1:{cfg.prometheus_port}/api/v1/query?"
           + urllib.parse.urlencode({"query": query}))
    with urllib.request.urlopen(url, timeout=5) as r:
        return list(json.loads(r.read())["data"]["result"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def alert_stack(receiver: Receiver, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[stack.StackConfig]:
    """Fast Prometheus (1 s, FAST rules) + Alertmanager webhook -> receiver; restored after."""
    cfg = _running_config()
    prom_yml = cfg.service_dir("prometheus") / "prometheus.yml"
    rules = tmp_path / "rules" / "crowdwatch-fast.yml"
    assert rules_gen.main(["--fast", "--out", str(rules)]) == 0
    fast = yaml.safe_load(stack.render_prometheus_config(replace(cfg, scrape_interval="1s")))
    fast["rule_files"] = [str(rules)]
    am_cfg = tmp_path / "alertmanager.yml"
    text = (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    assert PLACEHOLDER_WEBHOOK in text
    text = text.replace(PLACEHOLDER_WEBHOOK, receiver.url).replace(
        "templates/*.tmpl", str(REPO / "deploy" / "alertmanager" / "templates" / "*.tmpl"))
    am_cfg.write_text(text, encoding="utf-8")
    try:
        prom_yml.write_text(json.dumps(fast, indent=2), encoding="utf-8")
        stack.reload_prometheus(cfg)
        monkeypatch.setenv("CROWDWATCH_STACK_ALERTMANAGER_CONFIG", str(am_cfg))
        stack.restart_service("alertmanager", cfg)
        yield cfg
    finally:
        monkeypatch.delenv("CROWDWATCH_STACK_ALERTMANAGER_CONFIG", raising=False)
        stack.set_worker_targets(cfg.worker_targets, cfg)
        prom_yml.write_text(stack.render_prometheus_config(cfg), encoding="utf-8")
        stack.reload_prometheus(cfg)
        stack.restart_service("alertmanager", cfg)


def _scraped_worker(cfg: stack.StackConfig, worker_factory: Any, tmp_path: Path,
                    metric: str) -> tuple[str, Path, Any]:
    """A worker for a fresh event name (so Alertmanager's notification log of earlier runs
    does not mix in), pushing alerts quickly, scraped by Prometheus: ``metric`` of the
    worker is seen, and a few scrapes of its zero values are in, so increase() sees a rise."""
    event_name = f"e2e-{uuid.uuid4().hex[:8]}"
    event_file = tmp_path / "event.yaml"
    event_file.write_text(DEFAULT_EVENT_PATH.read_text(encoding="utf-8").replace(
        "name: koningsdag-amsterdam", f"name: {event_name}", 1), encoding="utf-8")
    assert load_event(event_file).name == event_name
    w = worker_factory(event=event_file)
    w.env.update({"CROWDWATCH_ALERTS_TICK_S": "0.25", "CROWDWATCH_ALERTS_UPDATE_S": "2"})
    w.start()
    w.wait_ready()
    target = f"127.0.0.1:{w.settings.web_port}"
    stack.set_worker_targets([target], cfg)
    deadline = time.monotonic() + 30
    while not _prom_query(cfg, f'{metric}{{instance="{target}"}}'):
        assert time.monotonic() < deadline, "Prometheus did not scrape the worker"
        time.sleep(0.5)
    time.sleep(2)
    return event_name, event_file, w


@pytest.mark.slow
def test_crowd_safety_burst_reaches_the_webhook_grouped(
    alert_stack: stack.StackConfig, receiver: Receiver, worker_factory: Any,
    tmp_path: Path,
) -> None:
    event_name, event_file, w = _scraped_worker(alert_stack, worker_factory, tmp_path,
                                                 "crowdwatch_safety_posts_total")

    out = tmp_path / "traffic"
    gen = run_cli("generate", "--scenario", "crowd-safety", "--seed", "11", "--posts", "1500",
                  "--minutes", "30", "--out", str(out), env={**os.environ})
    assert gen.returncode == 0, gen.stderr
    rep = run_cli("replay", str(out / "posts.jsonl"), "--max-rate", "500", "--topic",
                  w.settings.topic_raw, env=w.env)
    assert rep.returncode == 0, rep.stderr

    # produce time of the first crowd-safety post inside an area (Kafka CreateTime)
    raw = consume_all(w.settings, [w.settings.topic_raw], 1500, timeout=60)
    enricher = Enricher(load_event(event_file))
    safety_times: list[tuple[float, str, str | None]] = []
    for rec in raw:
        (post,) = enricher.process([RawRecord(rec.value, {})]).enriched or (None,)
        if post is not None and post.safety is not None and post.areas:
            safety_times.append((rec.timestamp / 1000, post.areas[0], post.safety.category))
    assert len(safety_times) >= 10, "the generated burst should hold safety posts in an area"
    safety_times.sort()
    first_post = safety_times[0][0]
    second_post = safety_times[1][0]
    burst_area = max({a for _, a, _ in safety_times},
                     key=lambda a: sum(1 for _, x, _ in safety_times if x == a))

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (receiver.notifications("CrowdSafetyPosts", event_name)
                and receiver.notifications("CrowdSafetyPostsInArea", event_name)):
            break
        time.sleep(0.2)
    time.sleep(5)  # anything that would arrive per post arrives now
    pushes = receiver.notifications("CrowdSafetyPosts", event_name)
    rule = receiver.notifications("CrowdSafetyPostsInArea", event_name)
    assert pushes, f"no CrowdSafetyPosts notification; got {len(receiver.received)} others"
    assert rule, "no CrowdSafetyPostsInArea notification from the Prometheus rule"

    # grouped: one notification per (alertname, event, area) group, not one per post
    groups: dict[str, int] = {}
    for _, body in pushes:
        groups[body["groupKey"]] = groups.get(body["groupKey"], 0) + 1
    n_areas = len({a for _, a, _ in safety_times})
    assert len(groups) <= n_areas
    assert all(n == 1 for n in groups.values()), groups
    assert len(pushes) < len(safety_times) / 3

    # the burst area's notification carries example posts, area, count and a link
    area_push = next(b for _, b in pushes if b["commonLabels"].get("area") == burst_area)
    alerts = area_push["alerts"]
    assert {a["labels"]["category"] for a in alerts} <= {"crowd_crush", "violence",
                                                          "fire_smoke", "medical"}
    for alert in alerts:
        ann = alert["annotations"]
        assert ann["samples"].startswith("- ") and 1 <= len(ann["samples"].splitlines()) <= 3
        assert int(ann["posts"]) >= 1 and burst_area in ann["summary"]
        assert "var-area=" in ann["dashboard_url"] and "#crowdsafetyposts" in ann["runbook_url"]
        assert set(alert["labels"]) == {"alertname", "event", "area", "category", "severity",
                                        "team", "source"}
    rule_alert = next(b for _, b in rule)["alerts"][0]
    assert rule_alert["labels"]["severity"] == "critical"
    assert "NL: " in rule_alert["annotations"]["description"]

    agent_latency = pushes[0][0] - first_post
    rule_latency = rule[0][0] - second_post
    print(f"\npost -> webhook latency: worker push {agent_latency:.2f}s (first safety post), "  # noqa: T201
          f"Prometheus rule {rule_latency:.2f}s (second safety post, threshold 2); "
          f"{len(safety_times)} safety posts in {n_areas} area(s) -> {len(pushes)} "
          f"CrowdSafetyPosts notification(s), {len(rule)} rule notification(s)")
    assert agent_latency < 10
    assert rule_latency < 10


@pytest.mark.slow
def test_a_planted_rumour_reaches_the_webhook_grouped_with_samples(
    alert_stack: stack.StackConfig, receiver: Receiver, worker_factory: Any,
    tmp_path: Path,
) -> None:
    import asyncio

    from streams.state import RedisStore

    event_name, _event_file, w = _scraped_worker(alert_stack, worker_factory, tmp_path,
                                                  "crowdwatch_rumour_flagged_clusters")

    out = tmp_path / "traffic"
    gen = run_cli("generate", "--scenario", "rumour-rebuttal", "--seed", "11", "--posts",
                  "1500", "--minutes", "30", "--out", str(out), env={**os.environ})
    assert gen.returncode == 0, gen.stderr
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    started = time.time()
    rep = run_cli("replay", str(out / "posts.jsonl"), "--max-rate", "500", "--topic",
                  w.settings.topic_raw, env=w.env)
    assert rep.returncode == 0, rep.stderr

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (receiver.notifications("RumourClusterFlagged", event_name)
                and receiver.notifications("RumourFlagged", event_name)):
            break
        time.sleep(0.2)
    time.sleep(5)
    pushes = receiver.notifications("RumourClusterFlagged", event_name)
    rule = receiver.notifications("RumourFlagged", event_name)
    assert pushes, f"no RumourClusterFlagged notification; got {len(receiver.received)} others"
    assert rule, "no RumourFlagged notification from the Prometheus rule"

    # the planted rumour's cluster (from the worker's state in Redis) is among the alerts
    s = w.settings

    async def top() -> list[dict[str, Any]]:
        store = RedisStore(s.redis_url.get_secret_value(), prefix=s.redis_prefix)
        try:
            return await store.top_clusters(event_name, 50)
        finally:
            await store.close()

    rumour = set(truth["rumour_posts"])
    planted = max(asyncio.run(top()),
                  key=lambda c: len(set(c["sample_post_ids"]) & rumour))
    assert set(planted["sample_post_ids"]) & rumour
    alerts = [a for _, body in pushes for a in body["alerts"]]
    mine = [a for a in alerts if a["labels"]["cluster"] == planted["id"]]
    assert mine, "the planted rumour's cluster was not pushed"
    ann = mine[-1]["annotations"]
    assert ann["samples"].startswith("- ") and "NL: " in ann["description"]
    assert ann["runbook_url"].endswith("#rumourclusterflagged")
    # grouped: one notification per group (alertname, event), not one per post or cluster
    groups = {body["groupKey"] for _, body in pushes}
    assert len(groups) == 1
    assert len(pushes) < len(rumour) / 10
    latency = pushes[0][0] - started
    print(f"\nreplay start -> first RumourClusterFlagged push {latency:.2f}s; "  # noqa: T201
          f"{len({a['labels']['cluster'] for a in alerts})} cluster alert(s) in "
          f"{len(pushes)} notification(s); rule notifications {len(rule)}")
