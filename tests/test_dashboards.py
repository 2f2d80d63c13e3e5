"""The generated Grafana dashboards (dashboards/generate.py): committed JSON equals a fresh
generation, and the dashboards are consistent with the metrics the worker exports, the alert
rules' dashboard links, the worker API and the event's areas. Their queries run against the
real Prometheus in tests/integration/test_dashboards_queries.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk (dev extra) "
                    "not installed: pip install -e '.[dev]'")

from dashboards import generate

ROOT = Path(__file__).resolve().parents[1]
METRIC = re.compile(r"\b(crowdwatch_[a-z_]+)\b")
API_PATHS = {"/api/clusters", "/api/rebuttals", "/api/webcare", "/api/official_posts"}


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return {doc["uid"]: doc for doc in generate.dashboards().values()}


def _targets(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in generate.iter_panels(doc):
        for target in panel.get("targets") or ():
            yield panel, target


def _exported_metric_names() -> set[str]:
    from prometheus_client import CollectorRegistry

    from streams import metrics as m

    reg = CollectorRegistry()
    m.PipelineMetrics(reg, "e", areas=["a"], topics=["t"])
    m.MoodMetrics(reg, "e")
    m.SafetyMetrics(reg, "e", areas=["a"])
    m.RumourMetrics(reg, "e")
    m.OfficialMetrics(reg, "e")
    from streams.ingest.common import IngestMetrics

    IngestMetrics(reg, "bluesky")  # the live connectors (crowdwatch ingest ...)
    names = set()
    for family in reg.collect():
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            names.add(family.name + suffix)
    return names


def test_committed_files_equal_a_fresh_generation() -> None:
    assert generate.main(["--check"]) == 0, "run `python -m dashboards.generate`"
    on_disk = {p.name for p in generate.DASHBOARD_DIR.glob("*.json")}
    assert on_disk == set(generate.dashboards()), "stale dashboard files in the directory"


def test_three_dashboards_with_stable_uids(docs: dict[str, dict[str, Any]]) -> None:
    assert set(docs) == {generate.UID_OVERVIEW, generate.UID_RUMOURS, generate.UID_PIPELINE}
    for doc in docs.values():
        ids = [p["id"] for p in generate.iter_panels(doc)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
        assert "id" not in doc
        for panel in generate.iter_panels(doc):
            if panel["type"] != "row":
                assert panel.get("title") and panel.get("description"), panel.get("title")


def test_worker_annotations_are_shown(docs: dict[str, dict[str, Any]]) -> None:
    """The annotations agent tags its annotations crowdwatch + rumour/official + event."""
    from agents.annotations import BASE_TAG

    for uid in (generate.UID_OVERVIEW, generate.UID_RUMOURS):
        tags = [a["target"]["tags"] for a in docs[uid]["annotations"]["list"]]
        assert [BASE_TAG, "rumour", "$event"] in tags and [BASE_TAG, "official", "$event"] in tags


def test_variables(docs: dict[str, dict[str, Any]]) -> None:
    overview = {v["name"]: v for v in docs[generate.UID_OVERVIEW]["templating"]["list"]}
    assert set(overview) == {"event", "area", "topic"}
    for name in ("area", "topic"):
        assert overview[name]["multi"] and overview[name]["includeAll"]
        assert '{event="$event"}' in overview[name]["query"]["query"]
    for doc in docs.values():
        for var in doc["templating"]["list"]:
            assert var["query"]["query"].startswith("label_values(")
            assert var["datasource"]["uid"] == generate.PROMETHEUS_UID


def test_every_query_uses_exported_metrics(docs: dict[str, dict[str, Any]]) -> None:
    exported = _exported_metric_names()
    used = set()
    for doc in docs.values():
        for panel, target in _targets(doc):
            if target["datasource"]["uid"] != generate.PROMETHEUS_UID:
                continue
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), (panel["title"], expr)
            assert expr.count("{") == expr.count("}"), (panel["title"], expr)
            names = set(METRIC.findall(expr))
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    # the command post shows volume, mood, safety, rumours; the pipeline lag and latency
    for needed in ("crowdwatch_posts_by_area_total", "crowdwatch_mood_score_count",
                   "crowdwatch_safety_posts_total", "crowdwatch_rumour_top_score",
                   "crowdwatch_rebuttal_reach_ratio", "crowdwatch_webcare_open",
                   "crowdwatch_consumer_lag", "crowdwatch_processing_latency_seconds_bucket",
                   "crowdwatch_posts_rejected_total", "crowdwatch_posts_by_platform_total"):
        assert needed in used, needed


def test_panels_use_known_datasources(docs: dict[str, dict[str, Any]]) -> None:
    uids = {generate.PROMETHEUS_UID, generate.API_UID}
    for doc in docs.values():
        for panel in generate.iter_panels(doc):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, panel["title"]
            for target in panel.get("targets") or ():
                assert target["datasource"] == panel["datasource"], panel["title"]


def test_api_tables_call_the_worker_api(docs: dict[str, dict[str, Any]]) -> None:
    seen = set()
    for doc in docs.values():
        for panel, target in _targets(doc):
            if target["datasource"]["uid"] != generate.API_UID:
                continue
            assert target["datasource"]["type"] == generate.INFINITY_TYPE
            assert panel["type"] == "table"
            url = urlparse(target["url"])
            assert f"{url.scheme}://{url.netloc}" == generate.API_BASE
            assert url.path in API_PATHS, url.path
            assert target["parser"] == "backend" and target["format"] == "table"
            seen.add(url.path)
    assert seen == API_PATHS


def test_alert_rule_dashboard_links_resolve(docs: dict[str, dict[str, Any]]) -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/crowdwatch.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            url = urlparse(rule["annotations"]["dashboard_url"])
            uid = url.path.split("/d/", 1)[1].split("/")[0]
            assert uid in docs, (rule["alert"], uid)
            names = {v["name"] for v in docs[uid]["templating"]["list"]}
            for part in url.query.split("&") if url.query else ():
                assert part.split("=")[0].removeprefix("var-") in names, (rule["alert"], part)


def test_runbook_anchors_exist(docs: dict[str, dict[str, Any]]) -> None:
    text = (ROOT / generate.RUNBOOK).read_text(encoding="utf-8")
    # explicit <a id="..."> anchors, and the ones GitHub derives from headings
    anchors = set(re.findall(r'<a id="([\w\-]+)"></a>', text))
    anchors |= {re.sub(r"[^\w\- ]", "", h.strip("# ").lower()).replace(" ", "-")
                for h in text.splitlines() if h.startswith("#")}
    for doc in docs.values():
        for panel in generate.iter_panels(doc):
            for anchor in re.findall(re.escape(generate.RUNBOOK) + r"#([\w\-]+)",
                                     panel.get("description", "")):
                assert anchor in anchors, (panel["title"], anchor)


def test_map_files_hold_every_area_of_the_event() -> None:
    event = yaml.safe_load(generate.EVENT_FILE.read_text(encoding="utf-8"))
    names = {a["name"] for a in event["areas"]}
    gazetteer = json.loads((generate.MAPS_DIR / "areas.json").read_text(encoding="utf-8"))
    assert {g["key"] for g in gazetteer} == names
    for g in gazetteer:  # Amsterdam, not (lon, lat) swapped
        assert 52 < g["latitude"] < 53 and 4 < g["longitude"] < 6
    geojson = json.loads((generate.MAPS_DIR / "areas.geojson").read_text(encoding="utf-8"))
    assert {f["id"] for f in geojson["features"]} == names


def test_coverage_row_shows_every_connector_signal(docs: dict[str, dict[str, Any]]) -> None:
    """Issue 7 "coverage": per connector source, connected, received/s, share produced,
    malformed and lag -- from the connectors' metrics, not the worker's platform mix."""
    panels = list(generate.iter_panels(docs[generate.UID_OVERVIEW]))
    titles = [p["title"] for p in panels]
    assert "Coverage: live connectors" in titles
    row = titles.index("Coverage: live connectors")
    cov = {p["title"]: p for p in panels[row + 1:] if p["type"] != "row"}
    exprs = {t: " ".join(q["expr"] for q in p["targets"]) for t, p in cov.items()}
    wanted = {"crowdwatch_ingest_connected", "crowdwatch_ingest_events_received_total",
              "crowdwatch_ingest_events_produced_total",
              "crowdwatch_ingest_events_malformed_total", "crowdwatch_ingest_lag_seconds"}
    assert wanted <= set(METRIC.findall(" ".join(exprs.values())))
    share = exprs["Share matched and produced"]
    assert share.index("produced_total") < share.index("/") < share.index("received_total")
    assert cov["Share matched and produced"]["fieldConfig"]["defaults"]["unit"] == \
        "percentunit"
    # a connector Prometheus cannot reach reads 0 (red), not "no data"
    assert 'up{job="crowdwatch-ingest"}' in exprs["Connected"]
    for title, panel in cov.items():
        assert "by (source)" in exprs[title] or "source" in exprs[title], title
        assert len(panel["description"]) > 80, title  # says what to do
    for title in ("Connected", "Connector lag"):
        assert "commander" in cov[title]["description"], title
    # the worker's per-platform counts are labelled for what they are: the mix
    assert "Platform mix of received posts" in titles
    assert not any(t.startswith("Coverage: share") for t in titles)
