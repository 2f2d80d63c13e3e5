"""The generated Prometheus alert rules and the Alertmanager config.

``dashboards/alerts.py`` generates ``deploy/prometheus/rules/crowdwatch.yml`` and its
promtool test file; both must be up to date. ``promtool`` and ``amtool`` (Debian packages
prometheus and prometheus-alertmanager; CI installs them) validate the files and run the
rule unit tests, which cover every rule firing and not firing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import alerts as gen

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "crowdwatch.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "crowdwatch_test.yml"
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
AM_TEMPLATES = ROOT / "deploy" / "alertmanager" / "templates"
RUNBOOK = ROOT / "docs" / "operations.md"
EXPECTED = {"NegativeMoodShift", "MoodShiftDetected", "VolumeBurstArea", "VolumeBurstTopic",
            "CrowdSafetyPostsInArea", "RumourFlagged", "RumourOutrunningRebuttal",
            "ConsumerLagGrowing", "WorkerStalled", "DeadLetterRateHigh", "NoInput", "WorkerDown"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package "
                    f"{'prometheus' if name == 'promtool' else 'prometheus-alertmanager'}); "
                    "CI installs it")
    return path


def _run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_generated_files_are_up_to_date() -> None:
    assert RULES.read_text(encoding="utf-8") == gen.render(), \
        "run `python -m dashboards.alerts` and commit the result"
    assert RULE_TESTS.read_text(encoding="utf-8") == gen.render_tests()
    assert gen.main(["--check"]) == 0


def test_every_rule_is_labelled_annotated_and_documented() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == EXPECTED
    runbook = RUNBOOK.read_text(encoding="utf-8")
    anchors = {m.lower() for m in re.findall(r'<a id="([\w-]+)"></a>', runbook)}
    for r in rules:
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        assert r["labels"]["team"] in {"commanders", "communication", "oncall"}, r["alert"]
        assert "for" in r, r["alert"]
        ann = r["annotations"]
        assert {"summary", "description", "runbook_url", "dashboard_url"} <= set(ann)
        assert "NL: " in ann["description"] and "\nEN: " in ann["description"]
        anchor = ann["runbook_url"].split("#", 1)[1]
        assert ann["runbook_url"].startswith("docs/operations.md#")
        assert anchor in anchors, f"docs/operations.md has no anchor {anchor}"
        # bounded labels only: never post ids, handles or cluster ids
        assert not re.search(r"\b(id|handle|author|cluster)\b", r["expr"]), r["alert"]
    assert not any("status" in r["annotations"] for r in rules)  # every rule is fed now


def test_every_rule_has_firing_and_quiet_promtool_cases() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == EXPECTED
    assert quiet == EXPECTED


def test_thresholds_are_configurable() -> None:
    t = gen.Thresholds().with_overrides(["safety_min_posts=7", "lag_max=5000"])
    text = gen.render(t)
    assert ">= 7" in text and "> 5000" in text
    with pytest.raises(ValueError, match="NAME=VALUE"):
        gen.Thresholds().with_overrides(["nope=1"])
    fast = yaml.safe_load(gen.render(gen.FAST))
    assert all(r["for"] == "0s" for g in fast["groups"] for r in g["rules"])


def test_promtool_check_rules() -> None:
    res = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "12 rules found" in res.stdout


def test_promtool_test_rules() -> None:
    res = _run(_tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_fast_rules_are_valid(tmp_path: Path) -> None:
    out = tmp_path / "fast.yml"
    assert gen.main(["--fast", "--out", str(out)]) == 0
    res = _run(_tool("promtool"), "check", "rules", str(out))
    assert res.returncode == 0, res.stdout + res.stderr


def test_amtool_check_config() -> None:
    res = _run(_tool("amtool"), "check-config", str(AM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 templates" in res.stdout


def test_templates_render_in_dutch_and_english() -> None:
    amtool = _tool("amtool")
    res = _run(amtool, "template", "render", f"--template.glob={AM_TEMPLATES}/*.tmpl",
               '--template.text={{ template "crowdwatch.title" . }}'
               ' {{ template "crowdwatch.text" . }} {{ template "crowdwatch.html" . }}')
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OPGELOST/RESOLVED" in res.stdout or "ALARM/FIRING" in res.stdout


def test_alertmanager_routes_and_inhibits() -> None:
    doc = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    route = doc["route"]
    assert route["group_by"] == ["alertname", "event", "area"]
    receivers = {r["name"]: r for r in doc["receivers"]}
    routed = {(tuple(r["matchers"])): r["receiver"] for r in route["routes"]}
    assert routed[('team="commanders"', 'severity="critical"')] == "commanders-critical"
    assert routed[('team="communication"',)] == "communication"
    assert routed[('team="oncall"', 'severity="critical"')] == "oncall-critical"
    for name in ("commanders-critical", "commanders", "communication", "oncall-critical",
                 "oncall", "default"):
        hooks = [w["url"] for w in receivers[name]["webhook_configs"]]
        assert "http://127.0.0.1:9/crowdwatch-webhook" in hooks, name
    assert receivers["commanders-critical"]["slack_configs"]
    assert receivers["commanders-critical"]["email_configs"]
    assert any("ntfy" in w["url"] for w in receivers["oncall-critical"]["webhook_configs"])
    assert "PLACEHOLDER" in AM_CONFIG.read_text(encoding="utf-8")
    (crit, down) = doc["inhibit_rules"]
    assert crit["equal"] == ["event", "area"]
    assert 'severity="critical"' in crit["source_matchers"]
    assert 'severity="warning"' in crit["target_matchers"]
    assert down["equal"] == ["job"]
