"""Grafana without Grafana: `crowdwatch dashboards push` (the real grafana-client) and the
worker's annotations (aiohttp) against a loopback stand-in that checks the token and
records every request (path, body, Authorization header)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from agents.annotations import AnnotationsSettings, EventAnnotations
from models.generate import DEFAULT_EVENT_PATH, generate
from streams.cli import DASHBOARDS_DIR, app
from streams.embedded import free_port
from streams.grafana import (
    EXIT_AUTH,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    GrafanaAnnotations,
    GrafanaError,
    folder_uid,
    load_dashboards,
    push_dashboards,
)
from tests.loopback import Handler, LoopbackServer

TOKEN = "glsa_test-token-0123456789"
runner = CliRunner(env={"CROWDWATCH_SENTIMENT_MODEL": "off", "CROWDWATCH_GRAFANA_URL": "",
                        "CROWDWATCH_GRAFANA_TOKEN": ""})


class FakeGrafana(LoopbackServer):
    """The parts of Grafana's HTTP API that crowdwatch uses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.folders: list[dict[str, Any]] = []
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.reject_titles: set[str] = set()
        self.annotation_status = 200
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/api/frontend/settings", self._settings),
                ("GET", "/api/folders", self._folders),
                ("POST", "/api/folders", self._create_folder),
                ("POST", "/api/dashboards/db", self._dashboard),
                ("POST", "/api/annotations", self._annotation)]

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.can_read_body else None
        entry = {"method": request.method, "path": request.path, "body": body,
                 "auth": request.headers.get("Authorization")}
        self.requests.append(entry)
        return entry

    def _authorised(self, entry: dict[str, Any]) -> bool:
        return bool(entry["auth"] == f"Bearer {TOKEN}")

    @staticmethod
    def _unauthorised() -> web.Response:
        return web.json_response({"message": "invalid API key"}, status=401)

    def paths(self, method: str = "POST") -> list[str]:
        return [r["path"] for r in self.requests if r["method"] == method]

    async def _settings(self, request: web.Request) -> web.Response:
        # grafana-client's health.check(): build info (signed-in users only)
        if not self._authorised(await self._record(request)):
            return self._unauthorised()
        return web.json_response({"buildInfo": {"version": "11.3.0", "edition": "OSS"}})

    async def _folders(self, request: web.Request) -> web.Response:
        if not self._authorised(await self._record(request)):
            return self._unauthorised()
        return web.json_response(self.folders)

    async def _create_folder(self, request: web.Request) -> web.Response:
        entry = await self._record(request)
        if not self._authorised(entry):
            return self._unauthorised()
        folder = {"id": len(self.folders) + 1, "uid": entry["body"].get("uid") or "gen",
                  "title": entry["body"]["title"]}
        self.folders.append(folder)
        return web.json_response(folder)

    async def _dashboard(self, request: web.Request) -> web.Response:
        entry = await self._record(request)
        if not self._authorised(entry):
            return self._unauthorised()
        dash = entry["body"]["dashboard"]
        if dash["title"] in self.reject_titles:
            return web.json_response({"message": "A dashboard with the same name in the "
                                      "folder already exists", "status": "name-exists"},
                                     status=412)
        uid = dash.get("uid") or "generated"
        version = self.dashboards.get(uid, {}).get("version", 0) + 1
        self.dashboards[uid] = {**dash, "version": version}
        return web.json_response({"id": 7, "uid": uid, "url": f"/d/{uid}/x",
                                  "status": "success", "version": version, "slug": "x"})

    async def _annotation(self, request: web.Request) -> web.Response:
        entry = await self._record(request)
        if not self._authorised(entry):
            return self._unauthorised()
        if self.annotation_status != 200:
            return web.json_response({"message": "boom"}, status=self.annotation_status)
        return web.json_response({"message": "Annotation added", "id": len(self.requests)})


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    g = FakeGrafana()
    yield g
    g.stop()


def _dashboard(uid: str, title: str) -> dict[str, Any]:
    return {"id": 42, "uid": uid, "title": title, "schemaVersion": 39, "tags": ["crowdwatch"],
            "panels": [{"type": "timeseries", "title": "posts",
                        "targets": [{"expr": "sum(rate(crowdwatch_posts_consumed_total[1m]))"}]}]}


@pytest.fixture
def board_dir(tmp_path: Path) -> Path:
    """Dashboards written by the test: a plain model and an export wrapped with meta."""
    d = tmp_path / "dashboards"
    d.mkdir()
    (d / "a-overview.json").write_text(json.dumps(_dashboard("cw-overview", "Overview")))
    (d / "b-rumours.json").write_text(json.dumps(
        {"dashboard": _dashboard("cw-rumours", "Rumours"), "meta": {"folderUid": "old"}}))
    (d / "notes.txt").write_text("not a dashboard")
    return d


# ---------------------------------------------------------------- dashboards push


def test_push_creates_the_folder_and_overwrites_by_uid(grafana: FakeGrafana,
                                                       board_dir: Path) -> None:
    boards = load_dashboards(board_dir)
    assert [p.name for p, _ in boards] == ["a-overview.json", "b-rumours.json"]
    report = push_dashboards(grafana.url, TOKEN, boards, folder="Crowdwatch Koningsdag")
    assert not report.failed and report.grafana_version == "11.3.0"
    assert report.folder_uid == folder_uid("Crowdwatch Koningsdag") == "crowdwatch-koningsdag"
    assert grafana.paths("GET") == ["/api/frontend/settings", "/api/folders"]
    assert grafana.paths() == ["/api/folders", "/api/dashboards/db", "/api/dashboards/db"]
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in grafana.requests)
    bodies = [r["body"] for r in grafana.requests if r["path"] == "/api/dashboards/db"]
    for body, uid in zip(bodies, ["cw-overview", "cw-rumours"], strict=True):
        assert body["overwrite"] is True
        assert body["folderUid"] == "crowdwatch-koningsdag"  # not the export's meta folder
        assert body["dashboard"]["uid"] == uid
        assert body["dashboard"]["id"] is None  # ids belong to the Grafana they came from
    assert [r.url for r in report.results] == [f"{grafana.url}/d/cw-overview/x",
                                               f"{grafana.url}/d/cw-rumours/x"]
    # a second push finds the folder by title and bumps the versions
    grafana.requests.clear()
    again = push_dashboards(grafana.url, TOKEN, boards, folder="Crowdwatch Koningsdag")
    assert "/api/folders" not in grafana.paths()
    assert [r.version for r in again.results] == [2, 2]


def test_push_without_folder_goes_to_general(grafana: FakeGrafana, board_dir: Path) -> None:
    report = push_dashboards(grafana.url, TOKEN, load_dashboards(board_dir))
    assert report.folder_uid is None and not report.failed
    bodies = [r["body"] for r in grafana.requests if r["path"] == "/api/dashboards/db"]
    # an export's meta folder is not followed: without --folder everything goes to General
    assert all("folderUid" not in b and "meta" not in b for b in bodies)


def test_push_401_is_clear_and_does_not_leak_the_token(grafana: FakeGrafana,
                                                       board_dir: Path) -> None:
    with pytest.raises(GrafanaError) as info:
        push_dashboards(grafana.url, "wrong-secret", load_dashboards(board_dir), folder="X")
    assert info.value.exit_code == EXIT_AUTH and info.value.status == 401
    assert "401" in str(info.value) and "wrong-secret" not in str(info.value)
    assert grafana.paths() == []  # refused at the first request: nothing pushed


def test_push_412_reports_that_dashboard_and_pushes_the_others(grafana: FakeGrafana,
                                                               board_dir: Path) -> None:
    grafana.reject_titles = {"Overview"}
    report = push_dashboards(grafana.url, TOKEN, load_dashboards(board_dir))
    assert [r.ok for r in report.results] == [False, True]
    (failed,) = report.failed
    assert "412" in failed.error and "name-exists" in failed.error
    assert "same title" in failed.error
    assert set(grafana.dashboards) == {"cw-rumours"}


def test_push_unreachable_and_bad_input(tmp_path: Path) -> None:
    board = tmp_path / "d"
    board.mkdir()
    (board / "x.json").write_text(json.dumps(_dashboard("u", "T")))
    with pytest.raises(GrafanaError) as info:
        push_dashboards(f"http://127.0.0.1:{free_port()}", TOKEN, load_dashboards(board),
                        timeout_s=2)
    assert info.value.exit_code == EXIT_UNREACHABLE and "unreachable" in str(info.value)
    with pytest.raises(GrafanaError) as info:
        push_dashboards("grafana.local:3000", TOKEN, load_dashboards(board))
    assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(GrafanaError) as info:
        push_dashboards("http://grafana.local", "", load_dashboards(board))
    assert info.value.exit_code == EXIT_USAGE
    (board / "broken.json").write_text("{nope")
    with pytest.raises(GrafanaError, match="not readable JSON"):
        load_dashboards(board)
    (board / "broken.json").write_text("[1, 2]")
    with pytest.raises(GrafanaError, match="not a Grafana dashboard"):
        load_dashboards(board)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GrafanaError, match=r"no \*\.json"):
        load_dashboards(empty)


def test_cli_push_exit_codes(grafana: FakeGrafana, board_dir: Path, tmp_path: Path) -> None:
    ok = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--token", TOKEN,
                             "--dir", str(board_dir), "--folder", "crowdwatch"])
    assert ok.exit_code == 0, ok.output
    assert "2 of 2 dashboard(s) pushed to folder 'crowdwatch'" in ok.output
    assert TOKEN not in ok.output
    # the token (and URL) from the environment
    env = {"CROWDWATCH_GRAFANA_URL": grafana.url, "CROWDWATCH_GRAFANA_TOKEN": TOKEN}
    res = runner.invoke(app, ["dashboards", "push", "--dir", str(board_dir)], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["dashboards", "push", "--dir", str(board_dir)],
                        env={**env, "CROWDWATCH_GRAFANA_TOKEN": "nope"})
    assert res.exit_code == EXIT_AUTH and "401" in res.output
    grafana.reject_titles = {"Rumours"}
    res = runner.invoke(app, ["dashboards", "push", "--dir", str(board_dir)], env=env)
    assert res.exit_code == 1 and "412" in res.output and "1 of 2" in res.output
    res = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--dir",
                              str(board_dir)])
    assert res.exit_code == EXIT_USAGE and "no Grafana token" in res.output
    empty = tmp_path / "none"
    empty.mkdir()
    res = runner.invoke(app, ["dashboards", "push", "--dir", str(empty)], env=env)
    assert res.exit_code == EXIT_USAGE
    res = runner.invoke(app, ["dashboards", "push", "--url", f"http://127.0.0.1:{free_port()}",
                              "--token", TOKEN, "--dir", str(board_dir), "--timeout", "2"])
    assert res.exit_code == EXIT_UNREACHABLE and "unreachable" in res.output


def test_the_repository_dashboards_push(grafana: FakeGrafana) -> None:
    """The dashboards in deploy/grafana/dashboards (generated separately) load and push."""
    if not any(DASHBOARDS_DIR.glob("*.json")):
        pytest.skip(f"no dashboards in {DASHBOARDS_DIR} yet")
    boards = load_dashboards(DASHBOARDS_DIR)
    report = push_dashboards(grafana.url, TOKEN, boards, folder="crowdwatch")
    assert not report.failed
    assert len(grafana.dashboards) == len({str(b.get("uid")) for _, b in boards})


# ---------------------------------------------------------------- annotations


def test_annotation_client_posts_time_tags_text_and_bearer(grafana: FakeGrafana) -> None:
    async def run() -> int | None:
        client = GrafanaAnnotations(grafana.url + "/", TOKEN)
        try:
            return await client.add("hello", ["crowdwatch", "rumour"], at=1_800_000_000.5,
                                    dashboard_uid="cw-overview", panel_id=3)
        finally:
            await client.close()

    assert isinstance(asyncio.run(run()), int)
    (req,) = grafana.requests
    assert req["path"] == "/api/annotations" and req["auth"] == f"Bearer {TOKEN}"
    assert req["body"] == {"time": 1_800_000_000_500, "tags": ["crowdwatch", "rumour"],
                           "text": "hello", "dashboardUID": "cw-overview", "panelId": 3}


def test_annotation_client_errors(grafana: FakeGrafana) -> None:
    async def add(url: str, token: str) -> None:
        client = GrafanaAnnotations(url, token, timeout_s=2)
        try:
            await client.add("x", ["crowdwatch"])
        finally:
            await client.close()

    with pytest.raises(GrafanaError) as info:
        asyncio.run(add(grafana.url, "bad"))
    assert info.value.status == 401 and "bad" not in str(info.value)
    with pytest.raises(GrafanaError, match="unreachable"):
        asyncio.run(add(f"http://127.0.0.1:{free_port()}", TOKEN))


def _snap(cid: str, flagged: bool = True, score: float = 0.81) -> dict[str, Any]:
    return {"id": cid, "summary": "RT @iemand: Bom gevonden op de Dam, iedereen weg!",
            "rumour_score": score, "size": 14, "flagged": flagged,
            "flagged_at": "2027-04-27T12:03:00Z", "state": "growing",
            "drivers": {"claim": 1.1, "spread": 0.6, "doubt": 0.0, "sources": 0.1}}


def test_event_annotations_once_per_cluster_and_post_with_retry(
        grafana: FakeGrafana, caplog: pytest.LogCaptureFixture) -> None:
    ann = EventAnnotations("koningsdag-amsterdam", AnnotationsSettings(),
                           GrafanaAnnotations(grafana.url, TOKEN))
    assert not ann.observe_cluster(_snap("c1", flagged=False))
    assert ann.observe_cluster(_snap("c1"), now=100.0)
    assert not ann.observe_cluster(_snap("c1", score=0.9), now=101.0)  # once per cluster
    assert ann.observe_official({"id": "o1", "account": "bluesky:politie.bsky.social",
                                 "role": "police", "kind": "post",
                                 "first_seen": "2027-04-27T12:05:00Z"}, now=102.0)
    assert not ann.observe_official({"id": "o1", "role": "police"})
    grafana.annotation_status = 503
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(ann.flush(now=103.0)) == 0
    assert len(ann.queue) == 2 and ann.failures == 1  # kept for the next tick
    assert TOKEN not in caplog.text
    grafana.annotation_status = 200
    assert asyncio.run(ann.flush(now=104.0)) == 2
    assert asyncio.run(ann.flush(now=105.0)) == 0
    bodies = [r["body"] for r in grafana.requests if r["path"] == "/api/annotations"]
    assert len(bodies) == 3  # one failed try + two posts
    rumour, official = bodies[1], bodies[2]
    assert rumour["tags"] == ["crowdwatch", "rumour", "koningsdag-amsterdam"]
    assert rumour["time"] == 100_000
    assert "Bom gevonden op de Dam" in rumour["text"] and "0.81" in rumour["text"]
    assert "14" in rumour["text"] and "@iemand" not in rumour["text"]  # mentions masked
    assert "why: claim +1.1, spread +0.6, sources +0.1)" in rumour["text"]
    assert official["tags"] == ["crowdwatch", "official", "police", "koningsdag-amsterdam"]
    assert "politie.bsky.social" in official["text"]
    assert "dashboardUID" not in rumour


def test_event_annotations_drop_what_grafana_refuses_and_bound_the_queue() -> None:
    class Refusing:
        calls = 0

        async def add(self, *a: Any, **k: Any) -> None:
            self.calls += 1
            raise GrafanaError("HTTP 400: bad", status=400)

        async def close(self) -> None:
            return None

    client = Refusing()
    ann = EventAnnotations("e", AnnotationsSettings(max_queue=2), client)  # type: ignore[arg-type]
    for i in range(3):
        ann.observe_cluster(_snap(f"c{i}"))
    assert len(ann.queue) == 2 and ann.dropped == 1
    assert asyncio.run(ann.flush()) == 0
    assert not ann.queue and client.calls == 2  # a 400 is not retried forever


def test_rumour_stage_hook_annotates_flagged_clusters_and_official_posts() -> None:
    from models.event import load_event
    from models.official import OfficialRegistry
    from models.official_tracker import OfficialTracker
    from streams.metrics import OfficialMetrics, RumourMetrics
    from streams.rumours import RumourStage
    from streams.state import MemoryStore
    from tests.test_rumour_tracker import _tracker

    event = load_event(DEFAULT_EVENT_PATH)
    registry = CollectorRegistry()
    base = OfficialRegistry.from_event(event)
    stage = RumourStage(_tracker(), event=event.name, store=MemoryStore(),
                        metrics=RumourMetrics(registry, event.name, top_k=3),
                        topic_events="clusters.events", state_ttl_s=600,
                        officials=OfficialTracker(base),
                        official_metrics=OfficialMetrics(registry, event.name, top_k=3),
                        base_registry=base)
    ann = EventAnnotations(event.name)  # no client: only the queue
    stage.annotations = ann
    traffic = generate("rumour-rebuttal", seed=5, n_posts=1200)
    values = [json.dumps(p).encode() for p in traffic.posts]

    async def run() -> None:
        for i in range(0, len(values), 300):
            await stage.process(values[i:i + 300])
        await stage.process(values[:600])  # re-delivery adds nothing
        await stage.tick()

    asyncio.run(run())
    stage.close()
    keys = [a.key for a in ann.queue]
    assert len(keys) == len(set(keys))
    flagged = {f"cluster:{c.id}" for c in stage.tracker.clusterer.clusters.values()
               if c.flagged_at is not None}
    assert {k for k in keys if k.startswith("cluster:")} == flagged
    officials = {f"official:{o['id']}" for o in traffic.truth["official_posts"]}
    assert {k for k in keys if k.startswith("official:")} == officials
