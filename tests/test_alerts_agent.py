"""The event-alerts agent (incident map -> Alertmanager pushes), its client, the safety
metrics and `crowdwatch alerts test`, against a fake Alertmanager (aiohttp, loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from agents.alerts import AlertsSettings, EventAlerts, mask
from models.enrich import Enricher, RawRecord, summarize
from models.event import load_event
from models.generate import DEFAULT_EVENT_PATH
from streams.alertmanager import Alert, AlertmanagerClient, AlertmanagerError, push_once
from streams.metrics import SafetyMetrics
from tests.loopback import Handler, LoopbackServer


def _summary(pid: str, text: str, areas: tuple[str, ...] = ("Dam",)) -> Any:
    enricher = Enricher(None)
    (post,) = enricher.process([RawRecord(json.dumps({"id": pid, "text": text}).encode(),
                                          {})]).enriched
    s = summarize(post, 0.0)
    return type(s)(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "areas": areas})


class FakeAlertmanager(LoopbackServer):
    """Records every POST /api/v2/alerts body (the client's unit tests; the real
    Alertmanager is exercised in tests/integration/test_alerts_e2e.py)."""

    def __init__(self) -> None:
        self.pushes: list[list[dict[str, Any]]] = []
        self.fail = False
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", "/api/v2/alerts", self._alerts), ("GET", "/api/v2/status", self._status)]

    async def _alerts(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.Response(status=500, text="boom")
        self.pushes.append(await request.json())
        return web.Response(status=200, text="")

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"versionInfo": {"version": "fake"}})


@pytest.fixture
def fake_am() -> Iterator[FakeAlertmanager]:
    am = FakeAlertmanager()
    yield am
    am.stop()


SETTINGS = AlertsSettings(resolve_after_s=600, renew_s=60, update_s=10, samples=3)


def test_one_alert_per_incident_not_per_post() -> None:
    alerts = EventAlerts("kd", SETTINGS)
    posts = [_summary(f"p{i}", f"Gedrang bij de Dam, help @user_{i} #{i}") for i in range(10)]
    posts.append(_summary("m1", "Meisje flauwgevallen, EHBO nodig"))
    posts.append(_summary("x1", "Wat een gezellige drukte"))  # not safety
    posts.append(_summary("n1", "Gedrang bij de ingang", areas=()))  # no area: metrics only
    alerts.observe_posts(posts, [True] * len(posts), now=1000.0)
    due = alerts.due(1000.0)
    assert len(due) == 2
    by_cat = {a.labels["category"]: a for _, a in due}
    crush = by_cat["crowd_crush"]
    assert crush.labels == {"alertname": "CrowdSafetyPosts", "event": "kd", "area": "Dam",
                            "category": "crowd_crush", "severity": "critical",
                            "team": "commanders", "source": "worker"}
    assert by_cat["medical"].labels["severity"] == "warning"
    ann = crush.annotations
    assert ann["posts"] == "10"
    samples = ann["samples"].splitlines()
    assert len(samples) == 3 and all(s.startswith("- Gedrang") for s in samples)
    assert "@user_" not in ann["samples"] and "@…" in ann["samples"]
    assert "NL: " in ann["description"] and "EN: " in ann["description"]
    assert ann["runbook_url"].endswith("#crowdsafetyposts") and "var-area=Dam" in \
        ann["dashboard_url"]
    api = crush.to_api()
    assert api["endsAt"] > api["startsAt"]  # alive until it would resolve
    # no post ids or handles in labels
    assert not any("p1" in v or "user" in v for v in crush.labels.values())


def test_renew_update_and_resolve_cycle() -> None:
    alerts = EventAlerts("kd", SETTINGS)
    alerts.observe_posts([_summary("a", "steekpartij bij de Dam")], [True], now=0.0)
    due = alerts.due(0.0)
    alerts.mark_pushed([k for k, _ in due], 0.0)
    assert alerts.due(5.0) == []  # nothing new, not time to renew
    alerts.observe_posts([_summary("b", "nog een steekpartij")], [True], now=6.0)
    assert alerts.due(8.0) == []  # changed, but update_s (10 s) not yet passed
    (_, upd), = alerts.due(10.0)
    assert upd.annotations["posts"] == "2"
    alerts.mark_pushed([k for k, _ in alerts.due(10.0)], 10.0)
    (_, renew), = alerts.due(70.0)  # renew_s
    assert renew.ends_at == 6.0 + 600
    alerts.mark_pushed([k for k, _ in alerts.due(70.0)], 70.0)
    # duplicates (fresh=False) do not count
    alerts.observe_posts([_summary("b", "nog een steekpartij")], [False], now=100.0)
    (_, resolved), = alerts.due(606.0)
    assert resolved.ends_at == 606.0 and resolved.annotations["posts"] == "2"
    alerts.mark_pushed([k for k, _ in alerts.due(606.0)], 606.0)
    assert alerts.incidents == {} and alerts.due(700.0) == []


def test_min_posts_and_unannounced_incidents() -> None:
    alerts = EventAlerts("kd", AlertsSettings(min_posts=3, resolve_after_s=60))
    alerts.observe_posts([_summary("a", "brand in een kraam")], [True], now=0.0)
    assert alerts.due(1.0) == []
    (_, silent), = alerts.due(61.0)  # resolved before it was ever announced: dropped quietly
    assert silent.labels == {}


def test_mood_signal_start_and_end() -> None:
    alerts = EventAlerts("kd", SETTINGS)
    alerts.observe_signal({"type": "mood_shift", "scope": "area", "name": "Dam",
                           "state": "started", "current_mood": -0.4, "baseline_mood": 0.3,
                           "zscore": -4.1, "posts_in_window": 30}, now=0.0)
    (_, alert), = alerts.due(0.0)
    assert alert.labels["alertname"] == "MoodShiftSignal" and alert.labels["area"] == "Dam"
    assert "-4.1" in alert.annotations["summary"]
    alerts.mark_pushed([k for k, _ in alerts.due(0.0)], 0.0)
    alerts.observe_signal({"type": "mood_shift", "scope": "area", "name": "Dam",
                           "state": "ended"}, now=120.0)
    (_, end), = alerts.due(120.0)
    assert end.ends_at == 120.0
    assert "not because the mood recovered" not in end.annotations["description"]


def test_a_mood_signal_that_ends_for_lack_of_posts_says_so() -> None:
    alerts = EventAlerts("kd", SETTINGS)
    alerts.observe_signal({"type": "mood_shift", "scope": "area", "name": "Dam",
                           "state": "started", "current_mood": -0.4, "baseline_mood": 0.3,
                           "zscore": -4.1, "posts_in_window": 30}, now=0.0)
    alerts.mark_pushed([k for k, _ in alerts.due(0.0)], 0.0)
    alerts.observe_signal({"type": "mood_shift", "scope": "area", "name": "Dam",
                           "state": "ended", "reason": "quiet"}, now=400.0)
    (_, end), = alerts.due(400.0)
    assert end.ends_at == 400.0
    text = end.annotations["description"]
    assert "niet meer over Dam wordt gepost" in text and "not because the mood recovered" in text
    assert "-4.1" in end.annotations["summary"]  # what fired stays readable


def test_a_flagged_rumour_cluster_is_one_incident_resolved_when_it_ends() -> None:
    alerts = EventAlerts("kd", SETTINGS)
    snap = {"id": "c0123456789ab", "summary": "Steekpartij bij @politie Rijksmuseum!",
            "rumour_score": 0.81, "size": 40, "state": "growing",
            "first_seen": "2027-04-27T12:00:00Z", "stance": {"query": 5, "deny": 2},
            "sample_posts": [{"id": "p1", "text": "Klopt dit @jan?"}, {"id": "p2", "text": ""},
                             {"id": "p3", "text": "Iemand neergestoken!!"}]}
    alerts.observe_cluster(snap, ended=False, now=0.0)
    alerts.observe_cluster(snap, ended=False, now=1.0)  # the same snapshot: no change
    (_, alert), = alerts.due(1.0)
    assert alert.labels == {"alertname": "RumourClusterFlagged", "event": "kd",
                            "cluster": "c0123456789ab", "severity": "warning",
                            "team": "communication", "source": "worker"}
    ann = alert.annotations
    assert "0.81" in ann["description"] and "NL: " in ann["description"]
    assert "mainly" not in ann["description"]  # a snapshot without drivers: no "why"
    # with the score's drivers the description says what drives it, in both languages
    alerts.observe_cluster({**snap, "drivers": {"claim": -0.62, "spread": 1.31, "doubt": 0.4,
                                                "sources": 0.02}}, ended=False, now=2.0)
    (_, alert), = alerts.due(2.0)
    assert "vooral: verspreiding +1,3, bewering -0,6, twijfel +0,4)" in \
        alert.annotations["description"]
    assert "mainly: spread +1.3, claim -0.6, doubt +0.4)" in alert.annotations["description"]
    assert ann["samples"].splitlines() == ["- Klopt dit @…?", "- Iemand neergestoken!!"]
    assert "@politie" not in ann["summary"] and ann["runbook_url"].endswith(
        "#rumourclusterflagged")
    alerts.mark_pushed([k for k, _ in alerts.due(1.0)], 1.0)
    alerts.observe_cluster({"id": "c0123456789ab"}, ended=True, now=300.0)
    (_, end), = alerts.due(300.0)
    assert end.ends_at == 300.0 and end.labels["cluster"] == "c0123456789ab"
    alerts.mark_pushed([k for k, _ in alerts.due(300.0)], 300.0)
    assert alerts.incidents == {}


def test_mask() -> None:
    assert mask("RT @a_b: hoi @c@mastodon.example kijk", 200) == "hoi @… kijk"
    assert len(mask("x" * 500, 50)) == 50


def test_flush_pushes_to_alertmanager_and_retries(fake_am: FakeAlertmanager) -> None:
    async def run() -> None:
        client = AlertmanagerClient(fake_am.url)
        alerts = EventAlerts("kd", SETTINGS, client)
        alerts.observe_posts([_summary(f"p{i}", "Paniek op de Dam") for i in range(5)],
                             [True] * 5, now=0.0)
        fake_am.fail = True
        assert await alerts.flush(0.0) == 0 and alerts.push_failures == 1
        fake_am.fail = False
        assert await alerts.flush(1.0) == 1
        assert await alerts.flush(2.0) == 0
        await alerts.close()

    asyncio.run(run())
    (body,) = fake_am.pushes
    (alert,) = body
    assert alert["labels"]["area"] == "Dam" and alert["annotations"]["posts"] == "5"
    assert alert["startsAt"].endswith("Z") and alert["endsAt"].endswith("Z")


def test_client_errors_are_one_line() -> None:
    with pytest.raises(AlertmanagerError, match="unreachable"):
        push_once("http://127.0.0.1:1", [Alert({"alertname": "x"})], timeout_s=2)
    with pytest.raises(AlertmanagerError, match="no Alertmanager URL"):
        AlertmanagerClient("")


def test_safety_metrics_count_once_per_post() -> None:
    registry = CollectorRegistry()
    m = SafetyMetrics(registry, "kd", areas=["Dam"])
    posts = [_summary("a", "Gedrang!"), _summary("b", "Brand!", areas=()),
             _summary("c", "gezellig")]
    m.observe(posts, [True, True, True])
    m.observe(posts, [False, False, False])  # re-delivered: not counted again
    get = registry.get_sample_value
    assert get("crowdwatch_safety_posts_total", {"event": "kd", "area": "Dam",
                                                 "category": "crowd_crush"}) == 1
    assert get("crowdwatch_safety_posts_total", {"event": "kd", "area": "none",
                                                 "category": "fire_smoke"}) == 1
    assert get("crowdwatch_safety_posts_total", {"event": "kd", "area": "Dam",
                                                 "category": "medical"}) == 0


def test_enriched_output_carries_the_optional_safety_field() -> None:
    event = load_event(DEFAULT_EVENT_PATH)
    enricher = Enricher(event)
    res = enricher.process([
        RawRecord(b'{"id": "1", "text": "Gedrang bij de Dam, ik word geplet"}', {}),
        RawRecord(b'{"id": "2", "text": "Gezellig op de Dam"}', {}),
    ])
    safe, calm = (p.to_dict() for p in res.enriched)
    assert safe["safety"]["category"] == "crowd_crush" and "geplet" in " ".join(
        safe["safety"]["terms"])
    assert "safety" not in calm
    s = summarize(res.enriched[0], 0.0)
    assert s.safety == "crowd_crush" and s.safety_text and s.areas


def test_cli_alerts_test(fake_am: FakeAlertmanager) -> None:
    from streams.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["alerts", "test", "--url", fake_am.url])
    assert ok.exit_code == 0, ok.output
    assert "pushed test alert" in ok.output
    (body,) = fake_am.pushes
    assert body[0]["labels"]["test"] == "true"
    assert "TEST" in body[0]["annotations"]["summary"]
    bad = runner.invoke(app, ["alerts", "test", "--url", "http://127.0.0.1:1"])
    assert bad.exit_code == 1
    assert "unreachable" in bad.output
