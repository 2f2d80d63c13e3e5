"""Prometheus alert rules as code: ``python -m dashboards.alerts`` writes
``deploy/prometheus/rules/crowdwatch.yml``.

Every threshold, window and ``for:`` duration lives in :class:`Thresholds`; change it here
(or pass ``--set name=value``) and regenerate. ``tests/test_alert_rules.py`` checks that the
committed file equals a fresh generation, then runs ``promtool check rules`` and
``promtool test rules deploy/prometheus/tests/crowdwatch_test.yml``.

Each rule carries ``severity`` (critical / warning / info) and ``team`` (commanders /
communication / oncall) labels, which ``deploy/alertmanager/alertmanager.yml`` routes on,
and ``summary``, ``description`` (Dutch + English), ``runbook_url`` (an anchor in
``docs/operations.md``) and ``dashboard_url`` annotations.

The rumour rules read ``crowdwatch_rumour_flagged_clusters{event}`` and
``crowdwatch_rebuttal_reach_ratio{event,rank}`` (exported by the rumour stage; the ratio
series exists only while a rebuttal is linked to a rumour cluster).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "crowdwatch.yml"
WORKER_JOB = "crowdwatch-worker"


@dataclass(frozen=True)
class Thresholds:
    """Every tunable number of the rules (durations in Prometheus syntax)."""

    # negative mood shift
    mood_window: str = "5m"
    mood_baseline: str = "1h"
    mood_drop: float = 0.3  # window mean below baseline mean by this much (score -1..1)
    mood_min_posts: int = 20  # scored posts in the window
    mood_for: str = "2m"
    mood_shift_for: str = "1m"  # the worker detector's gauge
    # volume bursts
    burst_window: str = "5m"
    burst_baseline: str = "1h"
    burst_factor: float = 3.0  # window rate above baseline rate times this
    burst_min_posts: int = 50  # posts in the window
    burst_for: str = "2m"
    # crowd-safety posts inside a geofence
    safety_window: str = "5m"
    safety_min_posts: float = 3
    safety_for: str = "0s"
    # rumours (fed once rumour tracking ships)
    rumour_window: str = "10m"
    rumour_for: str = "0s"
    rebuttal_ratio: float = 1.0  # rebuttal reach / rumour reach below this: out-run
    rebuttal_for: str = "10m"
    # pipeline health
    lag_max: int = 1000
    lag_window: str = "5m"
    lag_for: str = "5m"
    stall_window: str = "5m"  # look-back over the worker's stall gauge: bridges self-restarts
    stall_for: str = "1m"
    deadletter_ratio: float = 0.05
    deadletter_window: str = "5m"
    deadletter_for: str = "5m"
    no_input_window: str = "10m"
    no_input_for: str = "5m"
    worker_down_for: str = "1m"
    # links
    runbook_base: str = "docs/operations.md"
    dashboard_base: str = "http://127.0.0.1:3000/d/crowdwatch-overview"

    def with_overrides(self, pairs: Sequence[str]) -> Thresholds:
        """``name=value`` pairs, typed like the field they set."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        changes: dict[str, Any] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or name not in types:
                raise ValueError(f"--set {pair!r}: expected NAME=VALUE with NAME one of "
                                 f"{', '.join(types)}")
            changes[name] = types[name](value)
        return dataclasses.replace(self, **changes)


#: For the end-to-end test: short windows, no waiting.
FAST = Thresholds(mood_window="1m", mood_baseline="5m", mood_for="0s", mood_shift_for="0s",
                  burst_window="1m", burst_baseline="5m", burst_for="0s", safety_window="1m",
                  safety_min_posts=2, safety_for="0s", rumour_window="1m", rebuttal_for="0s",
                  lag_window="1m", lag_for="0s", stall_window="1m", stall_for="0s",
                  deadletter_window="1m", deadletter_for="0s", no_input_window="1m",
                  no_input_for="0s", worker_down_for="0s")


def _links(t: Thresholds, anchor: str, query: str = "") -> dict[str, str]:
    return {
        "runbook_url": f"{t.runbook_base}#{anchor}",
        "dashboard_url": t.dashboard_base + (f"?{query}" if query else ""),
    }


_AREA_QUERY = "var-event={{ $labels.event }}&var-area={{ $labels.area }}"


def _rule(alert: str, expr: str, for_: str, severity: str, team: str, summary: str,
          description_nl: str, description_en: str, links: dict[str, str],
          **extra: str) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": " ".join(expr.split()),
        "for": for_,
        "labels": {"severity": severity, "team": team},
        "annotations": {
            "summary": summary,
            "description": f"NL: {description_nl}\nEN: {description_en}",
            **extra,
            **links,
        },
    }


def build_rules(t: Thresholds | None = None) -> dict[str, Any]:
    """The rule file as a mapping (``groups: [...]``)."""
    t = t or Thresholds()
    # Mean mood of a window = (positive mass - negative mass) / posts. Scores are in
    # [-1, 1], so a plain sum is not monotonic (and the client does not expose _sum for a
    # histogram with negative buckets): the worker counts the positive and the negative
    # parts as two counters, which increase() handles across worker restarts.
    mood = (
        "(sum by (event, area) (increase(crowdwatch_mood_positive_total{{area!=\"none\"}}"
        "[{w}]{o})) - sum by (event, area) (increase(crowdwatch_mood_negative_total"
        "{{area!=\"none\"}}[{w}]{o})))"
        " / sum by (event, area) (increase(crowdwatch_mood_score_count{{area!=\"none\"}}"
        "[{w}]{o}))"
    )
    current = mood.format(w=t.mood_window, o="")
    baseline = mood.format(w=t.mood_baseline, o=f" offset {t.mood_window}")

    def burst(metric: str, label: str) -> str:
        sel = f'{metric}{{{label}!="none"}}'
        return (
            f"sum by (event, {label}) (rate({sel}[{t.burst_window}]))"
            f" > {t.burst_factor} * sum by (event, {label})"
            f" (rate({sel}[{t.burst_baseline}] offset {t.burst_window}))"
            f" and sum by (event, {label}) (increase({sel}[{t.burst_window}]))"
            f" >= {t.burst_min_posts}"
        )

    flagged = "sum by (event) (crowdwatch_rumour_flagged_clusters)"
    flagged_before = f"sum by (event) (crowdwatch_rumour_flagged_clusters offset {t.rumour_window})"
    consumed = f"sum by (job) (rate(crowdwatch_posts_consumed_total[{t.deadletter_window}]))"
    rejected = f"sum by (job) (rate(crowdwatch_posts_rejected_total[{t.deadletter_window}]))"
    mood_rules = [
        _rule(
            "NegativeMoodShift",
            f"({current}) - ({baseline}) < -{t.mood_drop}"
            f" and sum by (event, area) (increase(crowdwatch_mood_score_count{{area!=\"none\"}}"
            f"[{t.mood_window}])) >= {t.mood_min_posts}",
            t.mood_for, "warning", "commanders",
            "Mood in {{ $labels.area }} dropped by {{ $value | printf \"%.2f\" }}",
            f"De stemming in {{{{ $labels.area }}}} ({{{{ $labels.event }}}}) ligt de laatste "
            f"{t.mood_window} {{{{ $value | printf \"%.2f\" }}}} onder het gemiddelde van het uur "
            "ervoor. Kijk naar de berichten uit dit gebied.",
            f"Mood in {{{{ $labels.area }}}} ({{{{ $labels.event }}}}) over the last "
            f"{t.mood_window} is {{{{ $value | printf \"%.2f\" }}}} below its trailing "
            f"{t.mood_baseline} baseline. Check the posts from this area.",
            _links(t, "negativemoodshift", _AREA_QUERY)),
        _rule(
            "MoodShiftDetected",
            'label_replace(max by (event, name) (crowdwatch_mood_shift_active{scope="area"}),'
            ' "area", "$1", "name", "(.*)") == 1',
            t.mood_shift_for, "warning", "commanders",
            "Worker detector: negative mood shift in {{ $labels.area }}",
            "De stemmingsdetector van een worker meldt een negatieve omslag in "
            "{{ $labels.area }} ({{ $labels.event }}).",
            "A worker's mood-shift detector reports a negative shift in {{ $labels.area }} "
            "({{ $labels.event }}).",
            _links(t, "moodshiftdetected", _AREA_QUERY)),
    ]
    volume_rules = [
        _rule(
            "VolumeBurstArea", burst("crowdwatch_posts_by_area_total", "area"), t.burst_for,
            "warning", "commanders",
            "Post volume burst in {{ $labels.area }}",
            f"Het aantal berichten over {{{{ $labels.area }}}} is de laatste {t.burst_window} "
            f"meer dan {t.burst_factor:g}x zo hoog als in het uur ervoor.",
            f"Posts about {{{{ $labels.area }}}} over the last {t.burst_window} run more than "
            f"{t.burst_factor:g}x the trailing {t.burst_baseline} rate.",
            _links(t, "volumeburstarea", _AREA_QUERY)),
        _rule(
            "VolumeBurstTopic", burst("crowdwatch_posts_by_topic_total", "topic"), t.burst_for,
            "info", "communication",
            "Post volume burst on topic {{ $labels.topic }}",
            f"Het onderwerp {{{{ $labels.topic }}}} wordt de laatste {t.burst_window} meer dan "
            f"{t.burst_factor:g}x zo vaak genoemd als in het uur ervoor.",
            f"Topic {{{{ $labels.topic }}}} over the last {t.burst_window} runs more than "
            f"{t.burst_factor:g}x its trailing {t.burst_baseline} rate.",
            _links(t, "volumebursttopic", "var-event={{ $labels.event }}")),
    ]
    safety_rules = [
        _rule(
            "CrowdSafetyPostsInArea",
            f'sum by (event, area) (increase(crowdwatch_safety_posts_total{{area!="none"}}'
            f"[{t.safety_window}])) >= {t.safety_min_posts:g}",
            t.safety_for, "critical", "commanders",
            "Crowd-safety posts in {{ $labels.area }}",
            f"{{{{ $value | printf \"%.0f\" }}}} berichten over gedrang, geweld, brand of "
            f"onwelwording in {{{{ $labels.area }}}} in de laatste {t.safety_window}. "
            "Controleer met camera's en mensen ter plaatse.",
            f"{{{{ $value | printf \"%.0f\" }}}} posts about crowd crush, violence, fire or "
            f"medical emergencies in {{{{ $labels.area }}}} in the last {t.safety_window}. "
            "Verify with cameras and staff on the ground.",
            _links(t, "crowdsafetypostsinarea", _AREA_QUERY)),
    ]
    rumour_rules = [
        _rule(
            "RumourFlagged",
            f"({flagged} - {flagged_before} > 0) or ({flagged} > 0 unless {flagged_before})",
            t.rumour_for, "warning", "communication",
            "New rumour cluster flagged ({{ $labels.event }})",
            f"Er is in de laatste {t.rumour_window} een nieuw gerucht gemarkeerd. Beoordeel het "
            "en overweeg een weerlegging.",
            f"A new rumour cluster was flagged in the last {t.rumour_window}. Assess it and "
            "consider a rebuttal.",
            _links(t, "rumourflagged", "var-event={{ $labels.event }}")),
        _rule(
            "RumourOutrunningRebuttal",
            f"min by (event, rank) (crowdwatch_rebuttal_reach_ratio) < {t.rebuttal_ratio:g}",
            t.rebuttal_for, "warning", "communication",
            "Rumour #{{ $labels.rank }} out-runs its rebuttal"
            " (ratio {{ $value | printf \"%.2f\" }})",
            "Het bereik van de weerlegging van gerucht #{{ $labels.rank }} blijft achter bij dat "
            "van het gerucht (verhouding {{ $value | printf \"%.2f\" }}). Versterk de weerlegging.",
            "The rebuttal of rumour #{{ $labels.rank }} reaches fewer people than the rumour "
            "(ratio {{ $value | printf \"%.2f\" }}). Amplify the rebuttal.",
            _links(t, "rumouroutrunningrebuttal", "var-event={{ $labels.event }}")),
    ]
    health_rules = [
        _rule(
            "ConsumerLagGrowing",
            f"sum by (job, instance, topic) (crowdwatch_consumer_lag) > {t.lag_max}"
            f" and sum by (job, instance, topic) (delta(crowdwatch_consumer_lag[{t.lag_window}]))"
            " > 0",
            t.lag_for, "warning", "oncall",
            "Consumer lag {{ $value }} and growing on {{ $labels.instance }}",
            f"De achterstand van worker {{{{ $labels.instance }}}} op {{{{ $labels.topic }}}} is "
            f"meer dan {t.lag_max} berichten en groeit: de cijfers lopen achter.",
            f"Worker {{{{ $labels.instance }}}} is more than {t.lag_max} records behind on "
            "{{ $labels.topic }} and falling further behind: live numbers are late.",
            _links(t, "consumerlaggrowing")),
        _rule(
            "WorkerStalled",
            # the worker's watchdog (streams/watchdog.py) sets crowdwatch_consumer_stalled
            # after CROWDWATCH_STALL_AFTER_S with lag and no offset movement; max_over_time
            # keeps the alert up across the worker's self-restarts (a restart loop)
            "max by (job, instance, topic, partition)"
            f" (max_over_time(crowdwatch_consumer_stalled_seconds[{t.stall_window}]))"
            " and max by (job, instance, topic, partition)"
            f" (max_over_time(crowdwatch_consumer_stalled[{t.stall_window}])) == 1",
            t.stall_for, "critical", "oncall",
            "Worker {{ $labels.instance }} stalled on {{ $labels.topic }}/{{ $labels.partition }}",
            "Partitie {{ $labels.topic }}/{{ $labels.partition }} heeft achterstand maar de "
            "worker verwerkt niets meer (tot {{ $value | printf \"%.0f\" }} s zonder voortgang, "
            f"laatste {t.stall_window}). Met CROWDWATCH_STALL_RESTART_S herstart hij zichzelf; "
            "blijft dit alarm staan, dan hielp dat niet.",
            "Partition {{ $labels.topic }}/{{ $labels.partition }} has lag but the worker is not "
            "processing it (up to {{ $value | printf \"%.0f\" }} s without progress, last "
            f"{t.stall_window}). With CROWDWATCH_STALL_RESTART_S it restarts itself; if this "
            "alert stays, that did not help.",
            _links(t, "workerstalled")),
        _rule(
            "DeadLetterRateHigh",
            f"{rejected} / {consumed} > {t.deadletter_ratio:g} and {consumed} > 0",
            t.deadletter_for, "warning", "oncall",
            "{{ $value | humanizePercentage }} of input is dead-lettered",
            f"Meer dan {t.deadletter_ratio:.0%} van de invoer gaat naar posts.deadletter. "
            "Controleer de bron (connector, replay) en de redenen.",
            f"More than {t.deadletter_ratio:.0%} of the input goes to posts.deadletter. Check "
            "the source (connector, replay) and the reasons.",
            _links(t, "deadletterratehigh")),
        _rule(
            "NoInput",
            f"sum by (job) (increase(crowdwatch_posts_consumed_total[{t.no_input_window}])) == 0",
            t.no_input_for, "warning", "oncall",
            f"No posts consumed for {t.no_input_window}",
            f"De workers hebben {t.no_input_window} lang geen berichten gelezen: staan de "
            "connectors aan?",
            f"The workers read no posts for {t.no_input_window}: are the connectors running?",
            _links(t, "noinput")),
        _rule(
            "WorkerDown",
            f'up{{job="{WORKER_JOB}"}} == 0',
            t.worker_down_for, "critical", "oncall",
            "Worker {{ $labels.instance }} is down",
            "Prometheus kan worker {{ $labels.instance }} niet bereiken.",
            "Prometheus cannot scrape worker {{ $labels.instance }}.",
            _links(t, "workerdown")),
    ]
    return {"groups": [
        {"name": "crowdwatch-mood", "rules": mood_rules},
        {"name": "crowdwatch-volume", "rules": volume_rules},
        {"name": "crowdwatch-safety", "rules": safety_rules},
        {"name": "crowdwatch-rumours", "rules": rumour_rules},
        {"name": "crowdwatch-pipeline", "rules": health_rules},
    ]}


# --------------------------------------------------------------------------- promtool tests

TESTS_FILE = ROOT / "deploy" / "prometheus" / "tests" / "crowdwatch_test.yml"
_TEMPLATE = re.compile(r"\{\{ \$(labels\.(\w+)|value)( \| (printf \"(%\.\df)\"|"
                       r"humanizePercentage))? \}\}")


def _go_float(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e21 else repr(v)


def render_template(text: str, labels: dict[str, str], value: float) -> str:
    """The annotation templates used above, rendered like Prometheus does (only the forms
    they use: ``$labels.x``, ``$value``, ``printf "%.Nf"``, ``humanizePercentage``)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        if m.group(5):
            return m.group(5) % value
        if m.group(4) == "humanizePercentage":
            return f"{value * 100:.4g}%"
        return _go_float(value)

    out = _TEMPLATE.sub(sub, text)
    if "{{" in out:
        raise ValueError(f"template form not supported by render_template: {text!r}")
    return out


@dataclass(frozen=True)
class Case:
    """One promtool test group: input series, then (eval time, alert, [(labels, value)])."""

    series: tuple[tuple[str, str], ...]
    evals: tuple[tuple[str, str, tuple[tuple[dict[str, str], float], ...]], ...]


_EV = {"event": "koningsdag"}
_W1 = {"job": WORKER_JOB, "instance": "w1:6066"}


def _s(name: str, labels: dict[str, str], values: str) -> tuple[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}", values


def _cases() -> list[Case]:
    """Firing and not-firing cases for every rule, for the default :class:`Thresholds`."""
    dam = {**_EV, "area": "Dam"}
    raw = {**_W1, "topic": "posts.raw"}
    return [
        Case((_s("crowdwatch_mood_positive_total", dam, "0+5x70 351+1x9"),
              _s("crowdwatch_mood_negative_total", dam, "0+0x70 3+3x9"),
              _s("crowdwatch_mood_score_count", dam, "0+10x80"),
              _s("crowdwatch_mood_positive_total", {**_EV, "area": "none"}, "0+5x70 351+1x9"),
              _s("crowdwatch_mood_negative_total", {**_EV, "area": "none"}, "0+0x70 3+3x9"),
              _s("crowdwatch_mood_score_count", {**_EV, "area": "none"}, "0+10x80")),
             (("60m", "NegativeMoodShift", ()),
              ("80m", "NegativeMoodShift", ((dam, -0.6406779661016949),)))),
        Case((_s("crowdwatch_mood_shift_active", {**_EV, "scope": "area", "name": "Dam"},
                 "0 0 1 1 1 1"),
              _s("crowdwatch_mood_shift_active", {**_EV, "scope": "topic", "name": "safety"},
                 "1 1 1 1 1 1")),
             (("1m", "MoodShiftDetected", ()),
              ("5m", "MoodShiftDetected", (({**_EV, "name": "Dam", "area": "Dam"}, 1),)))),
        Case((_s("crowdwatch_posts_by_area_total", dam, "0+1x70 110+40x9"),
              _s("crowdwatch_posts_by_area_total", {**_EV, "area": "Jordaan"}, "0+1x80"),
              _s("crowdwatch_posts_by_area_total", {**_EV, "area": "none"}, "0+1x70 110+40x9")),
             (("60m", "VolumeBurstArea", ()),
              ("80m", "VolumeBurstArea", ((dam, 40 / 60),)))),
        Case((_s("crowdwatch_posts_by_topic_total", {**_EV, "topic": "safety"},
                 "0+1x70 110+40x9"),
              _s("crowdwatch_posts_by_topic_total", {**_EV, "topic": "none"}, "0+1x70 110+40x9")),
             (("60m", "VolumeBurstTopic", ()),
              ("80m", "VolumeBurstTopic", (({**_EV, "topic": "safety"}, 40 / 60),)))),
        Case((_s("crowdwatch_safety_posts_total", {**dam, "category": "crowd_crush"}, "0+1x20"),
              _s("crowdwatch_safety_posts_total", {**dam, "category": "medical"}, "0+0x20"),
              _s("crowdwatch_safety_posts_total", {**_EV, "area": "Jordaan",
                                                   "category": "medical"}, "0+0x20"),
              _s("crowdwatch_safety_posts_total", {**_EV, "area": "none",
                                                   "category": "violence"}, "0+5x20")),
             (("1m", "CrowdSafetyPostsInArea", ()),
              ("20m", "CrowdSafetyPostsInArea", ((dam, 5),)))),
        Case((_s("crowdwatch_rumour_flagged_clusters", _EV, "0x15 1x15"),
              _s("crowdwatch_rumour_flagged_clusters", {"event": "concert"}, "_x15 1x15")),
             (("10m", "RumourFlagged", ()),
              ("20m", "RumourFlagged", ((_EV, 1), ({"event": "concert"}, 1))),
              ("30m", "RumourFlagged", ()))),
        Case((_s("crowdwatch_rebuttal_reach_ratio", {**_EV, "rank": "1"}, "0.5x20"),
              _s("crowdwatch_rebuttal_reach_ratio", {**_EV, "rank": "2"}, "2x20")),
             (("5m", "RumourOutrunningRebuttal", ()),
              ("15m", "RumourOutrunningRebuttal", (({**_EV, "rank": "1"}, 0.5),)))),
        Case((_s("crowdwatch_consumer_lag", {**raw, "partition": "0"}, "0+300x20"),
              _s("crowdwatch_consumer_lag", {**_W1, "instance": "w2:6067", "topic": "posts.raw",
                                             "partition": "0"}, "2000x20")),
             (("2m", "ConsumerLagGrowing", ()),
              ("15m", "ConsumerLagGrowing", ((raw, 4500),)))),
        # p0 stalls for good; p1 never; p2 in a restart loop (series gone while the worker
        # restarts); p3 stalls once and recovers (after a restart)
        Case((_s("crowdwatch_consumer_stalled", {**raw, "partition": "0"}, "0 0 1x10"),
              _s("crowdwatch_consumer_stalled_seconds", {**raw, "partition": "0"},
                 "0 30 60+60x10"),
              _s("crowdwatch_consumer_stalled", {**raw, "partition": "1"}, "0x12"),
              _s("crowdwatch_consumer_stalled_seconds", {**raw, "partition": "1"}, "0 20 40 0x9"),
              _s("crowdwatch_consumer_stalled", {**raw, "partition": "2"},
                 "0 1 _ 0 1 _ 0 1 _ 0 1 _"),
              _s("crowdwatch_consumer_stalled_seconds", {**raw, "partition": "2"},
                 "0 70 _ 0 70 _ 0 70 _ 0 70 _"),
              _s("crowdwatch_consumer_stalled", {**raw, "partition": "3"}, "0 1 _ 0x9"),
              _s("crowdwatch_consumer_stalled_seconds", {**raw, "partition": "3"}, "0 65 _ 0x9")),
             (("1m", "WorkerStalled", ()),
              ("3m", "WorkerStalled", (({**raw, "partition": "0"}, 120),
                                       ({**raw, "partition": "2"}, 70),
                                       ({**raw, "partition": "3"}, 65))),
              ("8m", "WorkerStalled", (({**raw, "partition": "0"}, 420),
                                       ({**raw, "partition": "2"}, 70))))),
        Case((_s("crowdwatch_posts_consumed_total", _W1, "0+100x20"),
              _s("crowdwatch_posts_rejected_total", {**_W1, "reason": "not_json"}, "0+10x20"),
              _s("crowdwatch_posts_rejected_total", {**_W1, "reason": "missing_id"}, "0+0x20")),
             (("3m", "DeadLetterRateHigh", ()),
              ("15m", "DeadLetterRateHigh", (({"job": WORKER_JOB}, 0.1),)))),
        Case((_s("crowdwatch_posts_consumed_total", _W1, "0+100x10 1000x30"),),
             (("15m", "NoInput", ()),
              ("35m", "NoInput", (({"job": WORKER_JOB}, 0),)))),
        Case((_s("up", _W1, "1 1 0 0 0 0"),
              _s("up", {"job": "prometheus", "instance": "p:9090"}, "0 0 0 0 0 0")),
             (("1m", "WorkerDown", ()),
              ("5m", "WorkerDown", ((_W1, 0),)))),
    ]


def build_tests(t: Thresholds | None = None) -> dict[str, Any]:
    """The promtool test file for :func:`build_rules` (default thresholds only)."""
    rules = {r["alert"]: r for g in build_rules(t)["groups"] for r in g["rules"]}
    tests = []
    for case in _cases():
        alert_tests = []
        for at, name, expected in case.evals:
            rule = rules[name]
            exp = []
            for labels, value in expected:
                all_labels = {**labels, **rule["labels"]}
                exp.append({
                    "exp_labels": all_labels,
                    "exp_annotations": {
                        k: render_template(v, {**all_labels, "alertname": name}, value)
                        for k, v in rule["annotations"].items()},
                })
            alert_tests.append({"eval_time": at, "alertname": name, "exp_alerts": exp})
        tests.append({
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in case.series],
            "alert_rule_test": alert_tests,
        })
    return {"rule_files": ["../rules/crowdwatch.yml"], "evaluation_interval": "1m",
            "tests": tests}


def render_tests(t: Thresholds | None = None) -> str:
    body = yaml.safe_dump(build_tests(t), sort_keys=False, allow_unicode=True, width=1000)
    return TESTS_HEADER + body


TESTS_HEADER = ("# Generated by `python -m dashboards.alerts` from dashboards/alerts.py: do not "
                "edit.\n# Run: promtool test rules deploy/prometheus/tests/crowdwatch_test.yml\n")

HEADER = ("# Generated by `python -m dashboards.alerts` from dashboards/alerts.py: do not edit.\n"
          "# Runbook: docs/operations.md. Tests: deploy/prometheus/tests/crowdwatch_test.yml.\n")


def render(t: Thresholds | None = None) -> str:
    body = yaml.safe_dump(build_rules(t), sort_keys=False, allow_unicode=True, width=1000)
    return HEADER + body


def alert_names(t: Thresholds | None = None) -> list[str]:
    return [r["alert"] for g in build_rules(t)["groups"] for r in g["rules"]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboards.alerts",
                                description="Write the Prometheus alert rules.")
    p.add_argument("--out", type=Path, default=RULES_FILE)
    p.add_argument("--tests-out", type=Path, default=TESTS_FILE,
                   help="promtool test file (default thresholds only; skipped with --fast/--set)")
    p.add_argument("--fast", action="store_true", help="short windows and for: (tests)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a threshold (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if --out differs from a fresh generation")
    args = p.parse_args(argv)
    try:
        t = (FAST if args.fast else Thresholds()).with_overrides(args.set)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.fast or args.set:
        args.tests_out = None  # the promtool cases are written for the default thresholds
    outputs = {args.out: render(t)}
    if args.tests_out is not None:
        outputs[args.tests_out] = render_tests(t)
    if args.check:
        stale = [p for p, text in outputs.items()
                 if not p.is_file() or p.read_text(encoding="utf-8") != text]
        for path in stale:
            sys.stderr.write(f"out of date: {path}\n")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
