"""`crowdwatch score --summary` with the rumour stage: clusters, official reach, rebuttals and
questions on generated traffic with known truth; re-delivery changes no count."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from models.generate import generate, write_traffic
from streams.cli import app
from streams.runtime import PACKAGED_EVENT


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("traffic")
    t = generate("rumour-rebuttal", seed=11, n_posts=2000)
    posts, _ = write_traffic(t, out)
    return posts, t.truth


def _score(posts: Path, tmp: Path, name: str, *, says: str = ""
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    os.environ.pop("CROWDWATCH_EVENT_FILE", None)
    res = CliRunner().invoke(app, [
        "score", str(posts), "--out", str(tmp / f"{name}.jsonl"), "--summary",
        str(tmp / f"{name}.json"), "--event", str(PACKAGED_EVENT), "--sentiment-model", "off",
        "--embedder", "hashing"])
    assert res.exit_code == 0, res.output
    assert says in " ".join(res.output.split())  # the console wraps long lines
    rows = [json.loads(x) for x in (tmp / f"{name}.jsonl").read_text().splitlines()]
    return json.loads((tmp / f"{name}.json").read_text()), rows


def test_summary_matches_the_truth_and_ignores_redelivery(
        traffic: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    posts, truth = traffic
    summary, rows = _score(posts, tmp_path, "once")
    # every tracked post carries its cluster, stance and rumour score
    for row in rows:
        if row["kind"] in ("like", "delete"):
            continue
        assert isinstance(row["cluster"], str) and 0.0 <= row["rumour_score"] <= 1.0
    clusters = summary["clusters"]
    assert isinstance(clusters, list) and clusters
    assert {"id", "size", "rumour_score", "state", "first_seen", "sample_post_ids"} <= set(
        clusters[0])
    # official reach is exact
    want = {o["id"]: (o["reposts"], o["replies"], o["quotes"])
            for o in truth["official_posts"]}
    got = {o["id"]: (o["reposts"], o["replies"], o["quotes"])
           for o in summary["official_posts"]}
    assert got == want
    # the webcare queue holds exactly the planted questions
    assert {q["id"] for q in summary["questions"]} == {
        q["id"] for q in truth["questions"]}
    # every planted rebuttal is linked to a cluster of its rumour
    linked = {r["official_post"] for r in summary["rebuttals"]}
    assert {r["official_post"] for r in truth["rebuttals"]} <= linked

    doubled = tmp_path / "twice.posts.jsonl"
    text = posts.read_text()
    doubled.write_text(text + text)
    again, _ = _score(doubled, tmp_path, "twice")
    for key in ("official_posts", "questions"):
        assert again[key] == summary[key]
    assert [(c["id"], c["size"]) for c in again["clusters"]] == [
        (c["id"], c["size"]) for c in clusters]


def test_a_post_older_than_the_cluster_ttl_is_listed_late_not_dropped(
        traffic: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A post more than the cluster TTL (3 h) older than the newest one joins no cluster:
    its row says so (cluster and rumour_score null) and the summary counts it."""
    posts, _ = traffic
    stale = {"id": "stale-1", "text": "Brand in de metro bij Centraal Station!",
             "created_at": "2020-01-01T00:00:00Z", "platform": "twitter"}
    late = tmp_path / "late.posts.jsonl"
    late.write_text(posts.read_text() + json.dumps(stale) + "\n")
    summary, rows = _score(late, tmp_path, "late", says="1 late post(s): dated more than "
                           "the cluster TTL (3 h) before a post earlier in the file")
    row = next(r for r in rows if r["id"] == "stale-1")
    assert (row["cluster"], row["rumour_score"], row["stance"]) == (None, None, None)
    assert summary["late_posts"] == 1
    plain, _ = _score(posts, tmp_path, "plain")
    assert plain["late_posts"] == 0
    assert [(c["id"], c["size"]) for c in summary["clusters"]] == [
        (c["id"], c["size"]) for c in plain["clusters"]]


def test_sort_processes_an_unordered_file_in_time_order(tmp_path: Path) -> None:
    """Newest first (a common export): without --sort most posts come late; with it the
    clusters are those of the file in time order, and bad lines keep their numbers."""
    posts, _ = write_traffic(generate("rumour-rebuttal", seed=12, n_posts=2000,
                                      duration_minutes=600), tmp_path / "ten-hours")
    lines = posts.read_text().splitlines()
    backwards = tmp_path / "newest-first.posts.jsonl"
    bad = "{not json"
    backwards.write_text("\n".join([*reversed(lines[:1000]), bad, *reversed(lines[1000:])])
                         + "\n")
    in_order = tmp_path / "in-order.posts.jsonl"
    in_order.write_text("\n".join(lines[:1000]) + "\n")
    mixed, _ = _score(backwards, tmp_path, "mixed", says="is the file in time order?")
    assert mixed["late_posts"] > 0
    os.environ.pop("CROWDWATCH_EVENT_FILE", None)
    res = CliRunner().invoke(app, [
        "score", str(backwards), "--out", str(tmp_path / "sorted.jsonl"), "--rejects",
        str(tmp_path / "rej.jsonl"), "--summary", str(tmp_path / "sorted.json"), "--event",
        str(PACKAGED_EVENT), "--sentiment-model", "off", "--embedder", "hashing", "--sort"])
    assert res.exit_code == 0, res.output
    sorted_summary = json.loads((tmp_path / "sorted.json").read_text())
    assert sorted_summary["late_posts"] == 0
    rows = [json.loads(x) for x in (tmp_path / "sorted.jsonl").read_text().splitlines()]
    times = [r["created_at"] for r in rows]
    assert times == sorted(times) and len(rows) == len(lines)
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [1001]  # its own line number
    whole, _ = _score(posts, tmp_path, "whole")
    # the same clusters (posts of the same second may come in another order, so a cluster
    # may be named after another of its first posts)
    assert sorted(c["size"] for c in sorted_summary["clusters"]) == sorted(
        c["size"] for c in whole["clusters"])
