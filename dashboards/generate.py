"""Grafana dashboards as code: ``python -m dashboards.generate`` writes the JSON files in
``deploy/grafana/dashboards/`` (provisioned by ``deploy/grafana/provisioning``) and the area
map files in ``deploy/grafana/maps/``; ``--check`` only compares and exits 1 on a difference.

Built with grafana-foundation-sdk (the ``11.6.0`` build pinned in pyproject, matching the
``grafana/grafana:11.6.16`` image of docker-compose.yml). Three dashboards:

- ``crowdwatch-overview`` -- *Command post*: volume, mood by area, rumours, active alerts,
  crowd-safety signals, a map of posts per area, the platform mix and the live
  connectors' coverage (connected, events received, share produced, malformed, lag);
- ``crowdwatch-rumours`` -- *Rumours & rebuttals*: reach race per linked pair, rumour
  lifecycle, time to rebuttal, official reach and the webcare queue;
- ``crowdwatch-pipeline`` -- *Pipeline health*: throughput, lag, dead letters, latency, stalls.

Every Prometheus query is a :class:`PromQuery` target; ``tests/integration/
test_dashboards_queries.py`` runs each of them against the real Prometheus. Tables of
clusters, rebuttals, webcare items and official posts come from the worker's token-guarded
JSON API through the Infinity datasource (uid :data:`API_UID`).

Active alerts come from Prometheus' ``ALERTS`` series (not the Alertmanager datasource): it
needs no extra datasource, carries the rule labels (event, area, severity) that the
dashboard filters on, and is checked like every other query. It shows what the rules fire,
not Alertmanager's silences, and not the alerts the worker pushes straight to Alertmanager
(``CrowdSafetyPosts``, ``RumourClusterFlagged``): those have their own panels here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import bargauge, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm
from grafana_foundation_sdk.models import prometheus as pm

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
MAPS_DIR = ROOT / "deploy" / "grafana" / "maps"
#: The event docker-compose.yml mounts into the worker: its areas are drawn on the map.
EVENT_FILE = ROOT / "streams" / "data" / "koningsdag-amsterdam.yaml"

PROMETHEUS_UID = "prometheus"
API_UID = "crowdwatch-api"
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
#: The worker's web port on the compose network (``http://worker:6066``).
API_BASE = "http://worker:6066"
#: Where compose mounts MAPS_DIR inside the Grafana container (served as static files).
MAPS_URL = "public/maps/crowdwatch"
RUNBOOK = "docs/operations.md"

PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
API = dm.DataSourceRef(type_val=INFINITY_TYPE, uid=API_UID)

UID_OVERVIEW = "crowdwatch-overview"  # the alert rules' dashboard_url points here
UID_RUMOURS = "crowdwatch-rumours"
UID_PIPELINE = "crowdwatch-pipeline"

# label matchers shared by the panels
EV = 'event="$event"'
AREA = 'event="$event", area=~"$area", area!="none"'
TOPIC = 'event="$event", topic=~"$topic", topic!="none"'
WORKER = 'job="crowdwatch-worker", instance=~"$instance"'
#: The live connectors (``crowdwatch ingest ... --metrics-port``): deploy/prometheus and
#: the local stack (streams/stack.py) scrape them as this job.
CONNECTOR = 'job="crowdwatch-ingest"'
RI = "[$__rate_interval]"


# --------------------------------------------------------------------------- helpers


def prom(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False,
         table_format: bool = False) -> pb.Dataquery:
    q = pb.Dataquery().expr(expr).ref_id(ref).datasource(PROMETHEUS)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


@dataclass
class InfinityDataquery(cogvariants.Dataquery):
    """An Infinity datasource query (the SDK has no builder for this plugin)."""

    url: str
    root_selector: str
    columns: list[tuple[str, str, str]]
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": API.to_json(),
            "type": "json",
            "source": "url",
            "parser": "backend",
            "format": "table",
            "url": self.url,
            "url_options": {"method": "GET", "data": ""},
            "root_selector": self.root_selector,
            "columns": [{"selector": s, "text": t, "type": k} for s, t, k in self.columns],
            "filters": [],
        }


class InfinityQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """``GET {API_BASE}{path}`` as a table; ``columns`` = (selector, title, type)."""

    def __init__(self, path: str, *, root_selector: str = "",
                 columns: Sequence[tuple[str, str, str]] = ()) -> None:
        self._q = InfinityDataquery(API_BASE + path, root_selector, list(columns))

    def build(self) -> InfinityDataquery:
        return self._q


def describe(text: str, *anchors: str) -> str:
    links = ", ".join(f"{RUNBOOK}#{a}" for a in anchors)
    return f"{text} Runbook: {links}." if anchors else text


def ts(title: str, desc: str, targets: Iterable[pb.Dataquery], *, unit: str = "short",
       stacked: bool = False, h: int = 8, w: int = 12, min_val: float | None = None,
       max_val: float | None = None, threshold: float | None = None) -> timeseries.Panel:
    p = (timeseries.Panel().title(title).description(desc).datasource(PROMETHEUS)
         .unit(unit).height(h).span(w).fill_opacity(15).line_width(1)
         .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                 .placement(cm.LegendPlacement.BOTTOM).show_legend(True)))
    for t in targets:
        p = p.with_target(t)
    if stacked:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    if threshold is not None:
        p = (p.thresholds_style(cb.GraphThresholdsStyleConfig()
                                .mode(cm.GraphThresholdsStyleMode.DASHED))
             .thresholds(steps([(None, "red"), (threshold, "green")])))
    return p


def steps(pairs: Sequence[tuple[float | None, str]]) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in pairs]))


def single(title: str, desc: str, target: pb.Dataquery, *, unit: str = "short",
           thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
           h: int = 4, w: int = 4, graph: bool = False, decimals: int | None = None
           ) -> stat.Panel:
    p = (stat.Panel().title(title).description(desc).datasource(PROMETHEUS)
         .with_target(target).unit(unit).height(h).span(w)
         .color_mode(cm.BigValueColorMode.BACKGROUND)
         .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
         .thresholds(steps(thresholds)))
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def bars(title: str, desc: str, targets: Iterable[pb.Dataquery], *, unit: str = "short",
         h: int = 8, w: int = 8, max_val: float | None = None) -> bargauge.Panel:
    p = (bargauge.Panel().title(title).description(desc).datasource(PROMETHEUS)
         .unit(unit).height(h).span(w).orientation(cm.VizOrientation.HORIZONTAL)
         .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
         .thresholds(steps([(None, "blue")])))
    for t in targets:
        p = p.with_target(t)
    if max_val is not None:
        p = p.max(max_val)
    return p


def api_table(title: str, desc: str, query: InfinityQuery, *, h: int = 8, w: int = 12
              ) -> table.Panel:
    return (table.Panel().title(title).description(desc).datasource(API)
            .with_target(query).height(h).span(w))


def prom_table(title: str, desc: str, target: pb.Dataquery, *, h: int = 8, w: int = 12,
               hide: Sequence[str] = ("Time",)) -> table.Panel:
    p = (table.Panel().title(title).description(desc).datasource(PROMETHEUS)
         .with_target(target).height(h).span(w))
    if hide:
        p = p.with_transformation(dm.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": dict.fromkeys(hide, True)}))
    return p


def variable(name: str, label: str, query: str, *, multi: bool = False,
             regex: str = "") -> db.QueryVariable:
    v = (db.QueryVariable(name).label(label).datasource(PROMETHEUS)
         .query({"query": query, "refId": f"var-{name}", "qryType": 1})
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
         .sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True).all_value(".*").current(
            dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    if regex:
        v = v.regex(regex)
    return v


EVENT_VAR = variable("event", "Event", "label_values(crowdwatch_posts_by_area_total, event)")
AREA_VAR = variable(
    "area", "Area", 'label_values(crowdwatch_posts_by_area_total{event="$event"}, area)',
    multi=True, regex="^(?!none$).*")
TOPIC_VAR = variable(
    "topic", "Topic", 'label_values(crowdwatch_posts_by_topic_total{event="$event"}, topic)',
    multi=True, regex="^(?!none$).*")
INSTANCE_VAR = variable(
    "instance", "Worker",
    'label_values(crowdwatch_posts_consumed_total{job="crowdwatch-worker"}, instance)',
    multi=True)


#: Grafana's built-in annotation store, where the worker's annotations agent
#: (agents/annotations.py) writes flagged rumours and official posts, tagged
#: ``crowdwatch``, ``rumour``/``official`` and the event name.
GRAFANA_BUILTIN = dm.DataSourceRef(type_val="grafana", uid="-- Grafana --")


def annotation(name: str, kind: str, colour: str) -> db.AnnotationQuery:
    return (db.AnnotationQuery().name(name).datasource(GRAFANA_BUILTIN).enable(True)
            .icon_color(colour)
            .target(db.AnnotationTarget().type("tags").tags(["crowdwatch", kind, "$event"])
                    .match_any(False).limit(100)))


def base(uid: str, title: str, description: str, tags: list[str]) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags(["crowdwatch", *tags])
            .refresh("10s").time("now-3h", "now").timezone("browser").readonly()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(db.DashboardLink("crowdwatch").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags(["crowdwatch"]).as_dropdown(True).include_vars(True).keep_time(True)))


# --------------------------------------------------------------------------- command post


def mood_expr(by: str, matchers: str, window: str = RI) -> str:
    """Mean sentiment (-1..1) of the posts in ``window``, grouped ``by``. An area without a
    positive (or negative) post has no such counter yet: it counts as 0, not as no data."""
    grp = f"sum by ({by})" if by else "sum"
    count = f"{grp} (rate(crowdwatch_mood_score_count{{{matchers}}}{window}))"
    pos = f"({grp} (rate(crowdwatch_mood_positive_total{{{matchers}}}{window})) or 0 * {count})"
    neg = f"({grp} (rate(crowdwatch_mood_negative_total{{{matchers}}}{window})) or 0 * {count})"
    return f"({pos} - {neg}) / {count}"


def area_map() -> geomap.Panel:
    markers = (cb.MapLayerOptions().type("markers").name("Posts per area")
               .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.LOOKUP)
                         .lookup("area").gazetteer(f"{MAPS_URL}/areas.json"))
               .config({"showLegend": True,
                        "style": {"size": {"field": "Value", "min": 6, "max": 40,
                                           "fixed": 6},
                                  "color": {"field": "Value"}, "opacity": 0.6,
                                  "text": {"field": "area", "mode": "field"},
                                  "textConfig": {"fontSize": 11, "offsetY": -18}}})
               .tooltip(True))
    outlines = (cb.MapLayerOptions().type("geojson").name("Area outlines")
                .config({"src": f"{MAPS_URL}/areas.geojson",
                         "style": {"color": {"fixed": "dark-blue"}, "opacity": 0.2}})
                .tooltip(False))
    lat, lon = _map_centre()
    return (geomap.Panel().title("Posts per area (selected time range)")
            .description(describe(
                "Unique posts about each area of the event over the selected time range "
                "(geotag inside the geofence, else a place name in the text). Bigger and "
                "warmer = more posts.", "volumeburstarea"))
            .datasource(PROMETHEUS).height(12).span(12)
            .with_target(prom(f'sum by (area) (increase(crowdwatch_posts_by_area_total'
                              f'{{{AREA}}}[$__range]))', "{{area}}", instant=True,
                              table_format=True))
            .view(geomap.MapViewConfig().id("coords").lat(lat).lon(lon).zoom(13))
            .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
            .layers([outlines, markers])
            .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(False))
            .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS)))


def command_post() -> db.Dashboard:
    volume = (f"sum by (area) (rate(crowdwatch_posts_by_area_total{{{AREA}}}{RI})) * 60")
    d = base(UID_OVERVIEW, "crowdwatch — Command post",
             "Volume, mood, rumours, alerts and crowd-safety signals of one event, per area.",
             ["command-post"])
    d = d.with_variable(EVENT_VAR).with_variable(AREA_VAR).with_variable(TOPIC_VAR)
    d = d.annotation(annotation("Flagged rumours", "rumour", "orange"))
    d = d.annotation(annotation("Official posts", "official", "blue"))
    d = d.with_row(db.Row("Now"))
    d = d.with_panel(single(
        "Posts / min", "Unique posts per minute, all areas and topics (last 5 minutes).",
        prom(f"sum(rate(crowdwatch_posts_by_platform_total{{{EV}}}[5m])) * 60"),
        graph=True, decimals=0, thresholds=((None, "blue"),)))
    d = d.with_panel(single(
        "Mood (15m)", describe("Mean sentiment of the selected areas' posts over the last 15 "
                               "minutes: -1 all negative, +1 all positive.",
                               "negativemoodshift"),
        prom(mood_expr("", AREA, "[15m]")), decimals=2,
        thresholds=((None, "red"), (-0.2, "orange"), (0.1, "green"))))
    d = d.with_panel(single(
        "Firing alerts", describe("Prometheus alert rules firing now for this event, plus "
                                  "pipeline alerts (they carry no event). 0 = all quiet.",
                                  "where-alerts-come-from"),
        prom('count(ALERTS{alertstate="firing", event=~"$event|"}) or vector(0)'),
        thresholds=((None, "green"), (1, "red"))))
    d = d.with_panel(single(
        "Crowd-safety posts (15m)", describe(
            "Posts about crowd crush, violence, fire/smoke or medical emergencies in the "
            "selected areas, last 15 minutes.", "crowdsafetypostsinarea"),
        prom(f"sum(increase(crowdwatch_safety_posts_total{{{AREA}}}[15m]))"), decimals=0,
        thresholds=((None, "green"), (1, "orange"), (3, "red"))))
    d = d.with_panel(single(
        "Flagged rumours", describe("Active claim clusters flagged as rumour.",
                                    "rumourflagged"),
        prom(f"sum(crowdwatch_rumour_flagged_clusters{{{EV}}})"),
        thresholds=((None, "green"), (1, "orange"))))
    d = d.with_panel(single(
        "Unanswered questions", "Open webcare items: questions and complaints to official "
        "accounts without an answer (details on the Rumours & rebuttals dashboard).",
        prom(f"sum(crowdwatch_webcare_open{{{EV}}})"),
        thresholds=((None, "green"), (5, "orange"), (20, "red"))))

    d = d.with_row(db.Row("Volume and mood"))
    d = d.with_panel(ts("Volume per area", describe(
        "Unique posts per minute about each selected area.", "volumeburstarea"),
        [prom(volume, "{{area}}")], unit="posts/min"))
    d = d.with_panel(ts("Mood by area", describe(
        "Mean sentiment per area (-1 negative .. +1 positive). A sharp fall in one area is "
        "the signal to look at its posts.", "negativemoodshift", "moodshiftdetected"),
        [prom(mood_expr("area", AREA), "{{area}}")], min_val=-1, max_val=1))
    d = d.with_panel(ts("Volume per topic", describe(
        "Unique posts per minute matching each selected topic's keywords.",
        "volumebursttopic"),
        [prom(f"sum by (topic) (rate(crowdwatch_posts_by_topic_total{{{TOPIC}}}{RI})) * 60",
              "{{topic}}")], unit="posts/min"))
    d = d.with_panel(ts("Mood mix (selected areas and topics)",
                        "Scored posts per minute by sentiment class.",
                        [prom(f"sum by (class) (rate(crowdwatch_mood_posts_total{{{AREA}, "
                              f'topic=~"$topic"}}{RI})) * 60', "{{class}}")],
                        unit="posts/min", stacked=True))

    d = d.with_row(db.Row("Crowd safety and alerts"))
    d = d.with_panel(ts("Crowd-safety signals", describe(
        "Crowd-safety posts per area and category in the trailing 5 minutes (the alert "
        "fires at 3 in one area).", "crowdsafetypostsinarea", "crowdsafetyposts"),
        [prom(f"sum by (area, category) (increase(crowdwatch_safety_posts_total{{{AREA}}}"
              f"[5m])) > 0", "{{area}} / {{category}}")], unit="short", w=8))
    d = d.with_panel(ts("Mood shift detector", describe(
        "1 while the worker's negative-shift detector reports a shift in an area (window "
        "mood several standard deviations below its baseline), 0 after it ended. 'none "
        "active' = no shift in the selected areas so far.",
        "moodshiftdetected", "moodshiftsignal"),
        [prom(f'max by (name) (crowdwatch_mood_shift_active{{{EV}, scope="area", '
              f'name=~"$area"}}) or on () label_replace(vector(0), "name", "none active", '
              f'"", "")', "{{name}}")], w=8, min_val=0, max_val=1))
    d = d.with_panel(prom_table("Active alerts", describe(
        "Alert rules firing now (Prometheus ALERTS), for this event and pipeline-wide. "
        "Silences are applied later, in Alertmanager.", "where-alerts-come-from"),
        prom('max by (alertname, severity, team, area) (ALERTS{alertstate="firing", '
             'event=~"$event|"})', instant=True, table_format=True), w=8,
        hide=("Time", "Value")))

    d = d.with_row(db.Row("Rumours"))
    d = d.with_panel(bars("Top rumour scores", describe(
        "Rumour score (0..1) of the highest-scoring claim clusters, by rank.",
        "rumourflagged"),
        [prom(f"max by (rank) (crowdwatch_rumour_top_score{{{EV}}})", "#{{rank}}")],
        max_val=1, w=6))
    d = d.with_panel(bars("Fastest flagged rumours", describe(
        "Posts per minute of the fastest flagged clusters, by rank.", "rumourflagged"),
        [prom(f"max by (rank) (crowdwatch_rumour_top_velocity{{{EV}}})", "#{{rank}}")],
        unit="posts/min", w=6))
    d = d.with_panel(api_table("Top rumour clusters", describe(
        "The claim clusters with the highest rumour score, from the worker's API "
        "(/api/clusters). Flagged = treated as a rumour.", "rumourflagged"),
        InfinityQuery("/api/clusters?top=10", columns=[
            ("summary", "Claim", "string"), ("state", "State", "string"),
            ("rumour_score", "Score", "number"), ("why", "Why", "string"),
            ("flagged", "Flagged", "string"),
            ("size", "Posts", "number"), ("distinct_accounts", "Accounts", "number"),
            ("velocity", "Posts/min", "number"), ("reach", "Reach", "number"),
            ("first_seen", "First seen", "timestamp")])))
    d = d.with_panel(api_table("Sample posts of the top clusters",
                               "Example posts of the top claim clusters (pseudonymised "
                               "state, texts kept for the rumour TTL).",
                               InfinityQuery("/api/clusters?top=5", root_selector="sample_posts",
                                             columns=[("id", "Post", "string"),
                                                      ("text", "Text", "string")]),
                               w=24))

    d = d.with_row(db.Row("Where and from which platform"))
    d = d.with_panel(area_map())
    d = d.with_panel(bars("Platform mix of received posts", (
        "Share of the event's unique posts that came from each platform in the selected "
        "time range: the mix of what arrived, not how much of each platform is seen (that "
        "is the Coverage row). A platform missing here: see its connector in Coverage."),
        [prom(f"sum by (platform) (increase(crowdwatch_posts_by_platform_total{{{EV}}}"
              f"[$__range])) / scalar(sum(increase(crowdwatch_posts_by_platform_total"
              f"{{{EV}}}[$__range])))", "{{platform}}", instant=True)],
        unit="percentunit", max_val=1, h=12, w=6))
    d = d.with_panel(bars("Languages", "Share of unique posts per detected language.",
                          [prom(f"sum by (lang) (increase(crowdwatch_posts_by_lang_total{{{EV}}}"
                                f"[$__range])) / scalar(sum(increase("
                                f"crowdwatch_posts_by_lang_total{{{EV}}}[$__range])))",
                                "{{lang}}", instant=True)],
                          unit="percentunit", max_val=1, h=12, w=6))
    return coverage(d)


def coverage(d: db.Dashboard) -> db.Dashboard:
    """The Coverage row: per live connector (``crowdwatch ingest bluesky|mastodon``, job
    ``crowdwatch-ingest``) whether it is connected, what the platform's stream delivers, the
    share of it produced for the event, malformed frames and lag. These series carry no
    event label: a connector serves the event whose filters it was started with."""
    received = f"sum by (source) (rate(crowdwatch_ingest_events_received_total{RI}))"
    d = d.with_row(db.Row("Coverage: live connectors"))
    d = d.with_panel(single(
        "Connected", describe(
            "1 = the connector holds the platform's stream open. 0 = disconnected: it "
            "reconnects by itself with backoff (up to 60 s). 0 without a platform name = "
            "Prometheus cannot reach that connector at all (not running). Disconnected for "
            "more than a few minutes: that platform's posts are missing from every panel; "
            "tell the commander the picture is incomplete, read the connector's log "
            "(`docker compose logs bluesky`: a one-line error such as a refused token) and "
            "restart it. Bluesky resumes from its cursor without a gap; Mastodon cannot "
            "replay what it missed.", "dashboard-command-post"),
        prom(f'max by (instance, source) (crowdwatch_ingest_connected) or on (instance) '
             f'(max by (instance) (up{{{CONNECTOR}}}) * 0)', "{{source}} {{instance}}"),
        thresholds=((None, "red"), (1, "green")), h=8, w=4, decimals=0))
    d = d.with_panel(ts("Events received / s per platform", (
        "Events per second each connector receives from the platform's stream, all kinds "
        "(posts, replies, quotes, reposts, likes, deletes, identity). Bluesky's whole "
        "firehose is a few thousand a second; 0 while connected = the stream delivers "
        "nothing: check the endpoint (another Jetstream instance) or the Mastodon stream."),
        [prom(received, "{{source}}")], unit="short", w=5))
    d = d.with_panel(ts("Share matched and produced", (
        "Share of the received events that matched the event's filters (topic terms, "
        "languages, official accounts) and were delivered to Kafka: produced / received. "
        "Low is normal for Bluesky (its stream is the whole network). 0 for long while "
        "events arrive: the filters match nothing; check the event file's topic terms and "
        "languages. Gaps = nothing received."),
        [prom(f"sum by (source) (rate(crowdwatch_ingest_events_produced_total{RI})) / "
              f"{received}", "{{source}}")], unit="percentunit", min_val=0, max_val=1, w=5))
    d = d.with_panel(ts("Malformed frames / s", (
        "Frames per second dead-lettered as malformed (posts.deadletter, reason in the "
        "record). Should stay at 0; a steady rate means the platform changed its format: "
        "report it with a sample from the dead-letter topic. The connector goes on."),
        [prom(f"sum by (source) (rate(crowdwatch_ingest_events_malformed_total{RI}))",
              "{{source}}")], unit="short", w=5))
    d = d.with_panel(ts("Connector lag", (
        "Now minus the time of the last event received (Jetstream: when it saw the event; "
        "Mastodon: the status time, which also grows when nobody posts). Seconds is normal. "
        "Minutes and climbing while events arrive: posts reach every panel that late; tell "
        "the commander, check the connector's CPU and log, and for Bluesky try another "
        "Jetstream endpoint (--endpoint)."),
        [prom("max by (source) (crowdwatch_ingest_lag_seconds)", "{{source}}")], unit="s",
        w=5, min_val=0))
    return d


# --------------------------------------------------------------------------- rumours


def rumours() -> db.Dashboard:
    d = base(UID_RUMOURS, "crowdwatch — Rumours & rebuttals",
             "Claim clusters, the race between rumours and official rebuttals, and the "
             "webcare queue.", ["communication"])
    d = d.with_variable(EVENT_VAR)
    d = d.annotation(annotation("Flagged rumours", "rumour", "orange"))
    d = d.annotation(annotation("Official posts", "official", "blue"))
    d = d.with_row(db.Row("Summary"))
    d = d.with_panel(single("Flagged rumours", describe(
        "Active claim clusters flagged as rumour.", "rumourflagged"),
        prom(f"sum(crowdwatch_rumour_flagged_clusters{{{EV}}})"),
        thresholds=((None, "green"), (1, "orange"))))
    d = d.with_panel(single("Linked rebuttals", "Rebuttal/rumour pairs being raced.",
                            prom(f"sum(crowdwatch_rebuttal_races{{{EV}}})"),
                            thresholds=((None, "blue"),)))
    d = d.with_panel(single("Rumours out-running", describe(
        "Linked pairs whose rumour currently out-runs the rebuttal.",
        "rumouroutrunningrebuttal"),
        prom(f'sum(crowdwatch_rebuttal_races{{{EV}, state="firing"}})'),
        thresholds=((None, "green"), (1, "red"))))
    d = d.with_panel(single("Official posts tracked", "Official posts whose reach is tracked.",
                            prom(f"sum(crowdwatch_official_posts_tracked{{{EV}}})"),
                            thresholds=((None, "blue"),)))
    d = d.with_panel(single("Open webcare items", describe(
        "Unanswered questions and complaints to official accounts.",
        "official-accounts-reach-and-the-webcare-queue"),
        prom(f"sum(crowdwatch_webcare_open{{{EV}}})"),
        thresholds=((None, "green"), (5, "orange"), (20, "red"))))
    d = d.with_panel(single("Oldest unanswered", describe(
        "Age of the oldest unanswered webcare item (event time).",
        "official-accounts-reach-and-the-webcare-queue"),
        prom(f"max(crowdwatch_webcare_oldest_age_seconds{{{EV}}})"), unit="s",
        thresholds=((None, "green"), (900, "orange"), (1800, "red"))))

    d = d.with_row(db.Row("Reach race"))
    d = d.with_panel(ts("Reach race per linked pair", describe(
        "Rebuttal reach / rumour reach of each linked pair (rank 1 = biggest rumour). Above "
        "the dashed line at 1 the rebuttal is ahead; below it the rumour out-runs it.",
        "rumouroutrunningrebuttal"),
        [prom(f"max by (rank) (crowdwatch_rebuttal_reach_ratio{{{EV}}})", "pair #{{rank}}")],
        threshold=1, min_val=0))
    d = d.with_panel(ts("Races by state", describe(
        "Linked pairs that are quiet (rebuttal keeping up) or firing (rumour ahead).",
        "rumouroutrunningrebuttal"),
        [prom(f"sum by (state) (crowdwatch_rebuttal_races{{{EV}}})", "{{state}}")],
        stacked=True))
    d = d.with_panel(api_table("Time to rebuttal", describe(
        "Every linked rebuttal with its time from the rumour's first post to the official "
        "rebuttal, its reach ratio and race state (worker API /api/rebuttals).",
        "rumouroutrunningrebuttal"),
        InfinityQuery("/api/rebuttals", columns=[
            ("official_post", "Official post", "string"), ("cluster", "Rumour cluster", "string"),
            ("time_to_rebuttal_s", "Time to rebuttal (s)", "number"),
            ("reach_ratio", "Reach ratio", "number"), ("rebuttal_reach", "Rebuttal reach",
                                                       "number"),
            ("rumour_reach", "Rumour reach", "number"), ("state", "State", "string"),
            ("linked_at", "Linked at", "timestamp"), ("link_source", "Linked by", "string")]),
        w=24))

    d = d.with_row(db.Row("Rumour lifecycle"))
    d = d.with_panel(ts("Clusters by lifecycle state", (
        "Active claim clusters (2+ posts): emerging, growing, peaking, fading, resolved."),
        [prom(f"sum by (state) (crowdwatch_rumour_active_clusters{{{EV}}})", "{{state}}")],
        stacked=True, w=8))
    d = d.with_panel(ts("Cluster events", describe(
        "Cluster events per minute: created, grew, state changed, flagged, expired.",
        "rumourclusterflagged"),
        [prom(f"sum by (type) (rate(crowdwatch_rumour_cluster_events_total{{{EV}}}{RI})) * 60",
              "{{type}}")], unit="events/min", w=8))
    d = d.with_panel(ts("Stance of clustered posts", (
        "Posts per minute by stance towards their cluster's claim: support, deny, query, "
        "comment. Many denials and questions are a hint that a claim is false."),
        [prom(f"sum by (stance) (rate(crowdwatch_rumour_stance_posts_total{{{EV}}}{RI})) * 60",
              "{{stance}}")], unit="posts/min", stacked=True, w=8))
    d = d.with_panel(ts("Fastest flagged rumours", describe(
        "Posts per minute of the fastest flagged clusters, by rank.", "rumourflagged"),
        [prom(f"max by (rank) (crowdwatch_rumour_top_velocity{{{EV}}})", "#{{rank}}")],
        unit="posts/min"))
    d = d.with_panel(api_table("Top rumour clusters", describe(
        "Claim clusters by rumour score (worker API /api/clusters).", "rumourflagged"),
        InfinityQuery("/api/clusters?top=20", columns=[
            ("summary", "Claim", "string"), ("state", "State", "string"),
            ("rumour_score", "Score", "number"), ("why", "Why", "string"),
            ("flagged", "Flagged", "string"),
            ("size", "Posts", "number"), ("velocity", "Posts/min", "number"),
            ("flagged_at", "Flagged at", "timestamp"), ("last_seen", "Last seen",
                                                        "timestamp")])))

    d = d.with_row(db.Row("Official messages and webcare"))
    d = d.with_panel(ts("Official reach by role", describe(
        "Engagements (reposts, replies, quotes, likes) with official posts, per account role.",
        "official-accounts-reach-and-the-webcare-queue"),
        [prom(f"sum by (role) (crowdwatch_official_reach{{{EV}}}) > 0", "{{role}}")], w=8))
    d = d.with_panel(ts("Webcare queue", describe(
        "Open (unanswered) items and new questions/complaints per minute.",
        "official-accounts-reach-and-the-webcare-queue"),
        [prom(f"sum(crowdwatch_webcare_open{{{EV}}})", "open"),
         prom(f"sum by (kind) (rate(crowdwatch_webcare_items_total{{{EV}}}{RI})) * 60",
              "new {{kind}}s/min", ref="B")], w=8))
    d = d.with_panel(ts("Webcare response time", describe(
        "Median and 90th percentile time for an official account to answer, over the "
        "trailing hour.", "official-accounts-reach-and-the-webcare-queue"),
        [prom(f"histogram_quantile(0.5, sum by (le) (rate("
              f"crowdwatch_webcare_response_seconds_bucket{{{EV}}}[1h])))", "median"),
         prom(f"histogram_quantile(0.9, sum by (le) (rate("
              f"crowdwatch_webcare_response_seconds_bucket{{{EV}}}[1h])))", "p90", ref="B")],
        unit="s", w=8))
    d = d.with_panel(api_table("Webcare queue", describe(
        "Unanswered questions and complaints to official accounts, oldest first "
        "(worker API /api/webcare).", "official-accounts-reach-and-the-webcare-queue"),
        InfinityQuery("/api/webcare")))
    d = d.with_panel(api_table("Official posts", describe(
        "Official posts and their reach (worker API /api/official_posts).",
        "official-accounts-reach-and-the-webcare-queue"),
        InfinityQuery("/api/official_posts")))
    return d


# --------------------------------------------------------------------------- pipeline


def pipeline() -> db.Dashboard:
    d = base(UID_PIPELINE, "crowdwatch — Pipeline health",
             "Throughput, lag, dead letters, latency and stalls of the crowdwatch workers.",
             ["oncall"])
    d = d.with_variable(EVENT_VAR).with_variable(INSTANCE_VAR)
    d = d.with_row(db.Row("Workers"))
    d = d.with_panel(single("Workers up", describe(
        "Workers Prometheus can scrape.", "workerdown"),
        prom(f"sum(up{{{WORKER}}})"), thresholds=((None, "red"), (1, "green"))))
    d = d.with_panel(single("Input / s", describe("Records read from posts.raw per second.",
                                                  "noinput"),
                            prom(f"sum(rate(crowdwatch_posts_consumed_total{{{WORKER}}}[5m]))"),
                            graph=True, decimals=1, thresholds=((None, "blue"),)))
    d = d.with_panel(single("Consumer lag", describe(
        "Records behind the end of the input partitions, all workers.",
        "consumerlaggrowing"),
        prom(f"sum(crowdwatch_consumer_lag{{{WORKER}}})"),
        thresholds=((None, "green"), (1000, "orange"), (10000, "red"))))
    d = d.with_panel(single("Dead-letter share (5m)", describe(
        "Share of the input dead-lettered in the last 5 minutes.", "deadletterratehigh"),
        prom(f"sum(rate(crowdwatch_posts_rejected_total{{{WORKER}}}[5m])) / "
             f"sum(rate(crowdwatch_posts_consumed_total{{{WORKER}}}[5m]))"),
        unit="percentunit", thresholds=((None, "green"), (0.01, "orange"), (0.05, "red"))))
    d = d.with_panel(single("Processing latency p95", (
        "95th percentile from a record's Kafka timestamp to its enriched output (5m)."),
        prom(f"histogram_quantile(0.95, sum by (le) (rate("
             f"crowdwatch_processing_latency_seconds_bucket{{{WORKER}}}[5m])))"),
        unit="s", thresholds=((None, "green"), (5, "orange"), (30, "red"))))
    d = d.with_panel(single("Since last batch", describe(
        "Seconds since the most recent worker finished a batch. Grows while idle, too: "
        "check against the consumer lag.", "workerstalled"),
        prom(f"time() - max(crowdwatch_last_batch_timestamp_seconds{{{WORKER}}})"),
        unit="s", thresholds=((None, "green"), (120, "orange"))))

    d = d.with_row(db.Row("Throughput and dead letters"))
    d = d.with_panel(ts("Throughput per worker", describe(
        "Records consumed per second by each worker, and unique posts accepted.", "noinput"),
        [prom(f"sum by (instance) (rate(crowdwatch_posts_consumed_total{{{WORKER}}}{RI}))",
              "consumed {{instance}}"),
         prom(f"sum by (instance) (rate(crowdwatch_posts_accepted_total{{{WORKER}}}{RI}))",
              "accepted {{instance}}", ref="B")], unit="rps"))
    d = d.with_panel(ts("Dead letters by reason", describe(
        "Records sent to posts.deadletter per second, by reason.", "deadletterratehigh"),
        [prom(f"sum by (reason) (rate(crowdwatch_posts_rejected_total{{{WORKER}}}{RI}))",
              "{{reason}}")], unit="rps", stacked=True))
    d = d.with_panel(ts("Duplicates and store errors", (
        "Re-delivered or re-posted records (not counted again) and failed Redis writes per "
        "second. Store errors should stay at 0."),
        [prom(f"sum(rate(crowdwatch_posts_duplicate_total{{{WORKER}}}{RI}))", "duplicates"),
         prom(f"sum(rate(crowdwatch_store_errors_total{{{WORKER}}}{RI}))", "store errors",
              ref="B")], unit="rps"))
    d = d.with_panel(ts("Posts by kind", "Unique records per second by kind.",
                        [prom(f"sum by (kind) (rate(crowdwatch_posts_by_kind_total{{{EV}, "
                              f"{WORKER}}}{RI}))", "{{kind}}")], unit="rps", stacked=True))

    d = d.with_row(db.Row("Lag and stalls"))
    d = d.with_panel(ts("Consumer lag per topic", describe(
        "Records behind the end of each input topic, per worker.", "consumerlaggrowing"),
        [prom(f"sum by (instance, topic) (crowdwatch_consumer_lag{{{WORKER}}})",
              "{{topic}} {{instance}}")], w=8))
    d = d.with_panel(ts("Committed offset moves (5m)", describe(
        "How often each worker committed an offset per topic in the trailing 5 minutes. 0 "
        "with lag > 0 = stalled.", "workerstalled"),
        [prom(f"sum by (instance, topic) (changes(crowdwatch_consumer_committed_offset"
              f"{{{WORKER}}}[5m]))", "{{topic}} {{instance}}")], w=8))
    d = d.with_panel(ts("Seconds since last batch", describe(
        "Per worker; a stalled worker with lag keeps climbing.", "workerstalled"),
        [prom(f"time() - max by (instance) (crowdwatch_last_batch_timestamp_seconds"
              f"{{{WORKER}}})", "{{instance}}")], unit="s", w=8))

    d = d.with_row(db.Row("Latency"))
    d = d.with_panel(ts("Processing latency", (
        "From a record's Kafka timestamp to its enriched output being acknowledged."),
        [prom(f"histogram_quantile({q}, sum by (le) (rate("
              f"crowdwatch_processing_latency_seconds_bucket{{{WORKER}}}{RI})))", name,
              ref=ref)
         for q, name, ref in ((0.5, "p50", "A"), (0.95, "p95", "B"), (0.99, "p99", "C"))],
        unit="s"))
    d = d.with_panel(ts("Stage batch time p95", (
        "95th percentile wall time per batch: enrichment, sentiment scoring, rumour "
        "clustering."),
        [prom(f"histogram_quantile(0.95, sum by (le) (rate({metric}_bucket{{{WORKER}}}"
              f"{RI})))", name, ref=ref)
         for metric, name, ref in (("crowdwatch_batch_seconds", "enrich", "A"),
                                   ("crowdwatch_sentiment_batch_seconds", "sentiment", "B"),
                                   ("crowdwatch_rumour_batch_seconds", "rumours", "C"))],
        unit="s"))
    return d


# --------------------------------------------------------------------------- map files


def _areas() -> list[tuple[str, dict[str, Any]]]:
    doc = yaml.safe_load(EVENT_FILE.read_text(encoding="utf-8"))
    return [(str(a["name"]), dict(a["geometry"])) for a in doc.get("areas") or ()]


def _rings(geometry: dict[str, Any]) -> Iterator[list[list[float]]]:
    polys = ([geometry["coordinates"]] if geometry["type"] == "Polygon"
             else geometry["coordinates"])
    for poly in polys:
        yield poly[0]  # outer ring


def _centroid(geometry: dict[str, Any]) -> tuple[float, float]:
    """(lat, lon): the mean of the outer rings' vertices (good enough for a marker)."""
    pts = [p for ring in _rings(geometry) for p in ring[:-1]]
    return (round(sum(p[1] for p in pts) / len(pts), 5),
            round(sum(p[0] for p in pts) / len(pts), 5))


def _map_centre() -> tuple[int, int]:
    # the SDK types lat/lon as int; Grafana accepts any number, so set exact values later
    return 0, 0


def map_files() -> dict[str, str]:
    areas = _areas()
    gazetteer = []
    for name, geometry in areas:
        lat, lon = _centroid(geometry)
        gazetteer.append({"key": name, "keys": [name.lower()], "name": name,
                          "latitude": lat, "longitude": lon})
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": name, "properties": {"name": name}, "geometry": geometry}
        for name, geometry in areas]}
    return {"areas.json": _dump(gazetteer), "areas.geojson": _dump(geojson)}


# --------------------------------------------------------------------------- output


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, cls=JSONEncoder) + "\n"


def _finish(doc: dict[str, Any]) -> dict[str, Any]:
    """Post-processing the SDK cannot express: exact map centre; no volatile ids."""
    areas = _areas()
    if areas:
        cents = [_centroid(g) for _, g in areas]
        lat = round(sum(c[0] for c in cents) / len(cents), 4)
        lon = round(sum(c[1] for c in cents) / len(cents), 4)
        for panel in doc.get("panels", []):
            if panel.get("type") == "geomap":
                panel["options"]["view"].update({"lat": lat, "lon": lon})
    doc.pop("id", None)
    for n, panel in enumerate(iter_panels(doc), start=1):  # unique, stable panel ids
        panel["id"] = n
    return doc


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON document."""
    out = {}
    for uid, builder in ((UID_OVERVIEW, command_post), (UID_RUMOURS, rumours),
                         (UID_PIPELINE, pipeline)):
        doc = json.loads(json.dumps(builder().build(), cls=JSONEncoder))
        out[f"{uid}.json"] = _finish(doc)
    return out


def rendered() -> dict[Path, str]:
    """Every generated file and its exact content."""
    files = {DASHBOARD_DIR / name: _dump(doc) for name, doc in dashboards().items()}
    files.update({MAPS_DIR / name: text for name, text in map_files().items()})
    return files


def iter_panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard document, including those inside collapsed rows."""
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed files; exit 1 on any difference")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    rel = [str(p.relative_to(ROOT)) for p in stale]
    if args.check:
        if rel:
            sys.stderr.write("out of date (run `python -m dashboards.generate`): "
                             + ", ".join(rel) + "\n")
            return 1
        return 0
    sys.stderr.write(("wrote " + ", ".join(rel)) if rel else "up to date")
    sys.stderr.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
