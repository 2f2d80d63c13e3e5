"""The worker's JSON API (/api/*) and the /metrics token: the plain handler functions on a
MemoryStore, then the real Faust pages of a Pipeline served by aiohttp's test server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from streams.app import (
    API_ROUTES,
    ApiAccess,
    Pipeline,
    api_response,
    bearer_ok,
    is_loopback,
)
from streams.settings import Settings
from streams.state import MemoryStore

EVENT = "koningsdag-amsterdam"
TOKEN = "s3cret-api-token"
NOW = 1_808_827_200.0  # 2027-04-27T12:00:00Z
OPEN = ApiAccess("", "127.0.0.1")


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _snap(cid: str, score: float, size: int, **kw: Any) -> dict[str, Any]:
    return {"id": cid, "summary": f"claim {cid}", "size": size, "roots": 1, "replies": 2,
            "reposts": size - 3, "quotes": 0,
            "stance": {"support": 1, "deny": 2, "query": 3, "comment": 4},
            "distinct_accounts": size, "reach": 10 * size, "rumour_score": score,
            "state": "growing", "official": False, "claim_prob": 0.7, "flagged": score > 0.5,
            "flagged_at": "2027-04-27T11:50:00Z" if score > 0.5 else None,
            "first_seen": "2027-04-27T11:40:00Z", "last_seen": "2027-04-27T11:59:00Z",
            "velocity": 1.5, "top_terms": ["bom", "dam"], "top_spreaders": ["u1", "u2"],
            "sample_post_ids": ["p1", "p2"],
            "sample_posts": [{"id": "p1", "text": "Bom op de Dam?"}, {"id": "p2", "text": "x"}],
            "drivers": {"claim": 0.85, "spread": 1.2, "doubt": 0.3, "sources": 0.01},
            **kw}


def _store() -> MemoryStore:
    store = MemoryStore()

    async def fill() -> None:
        await store.put_clusters(EVENT, [_snap("c1", 0.3, 40), _snap("c2", 0.9, 12),
                                         _snap("c3", 0.9, 30)], 600)
        await store.put_docs(EVENT, "webcare", {
            "q1": {"event": "new", "id": "q1", "to_account": "bluesky:politie", "kind": "question",
                   "text": "Waarom is de Dam dicht?", "created_at": "2027-04-27T11:50:00Z",
                   "answered": False, "response_s": None},
            "q2": {"event": "answered", "id": "q2", "to_account": "bluesky:politie",
                   "kind": "question", "text": "Rijdt de tram?",
                   "created_at": "2027-04-27T11:00:00Z", "answered": True, "response_s": 300.0},
            "q3": {"event": "new", "id": "q3", "to_account": "bluesky:gemeente",
                   "kind": "complaint", "text": "Schandalig", "answered": False,
                   "created_at": "2027-04-27T11:30:00Z"},
        })
        await store.put_docs(EVENT, "rebuttal_links", {
            "o1|c2": {"official_post": "o1", "cluster": "c2", "source": "manual",
                      "at": "2027-04-27T11:55:00Z"}})
        await store.put_docs(EVENT, "races", {
            "o1|c2": {"official_post": "o1", "cluster": "c2", "rebuttal_reach": 5,
                      "rumour_reach": 50, "reach_ratio": 0.1, "time_to_rebuttal_s": 600.0,
                      "state": "firing", "episodes": [{"start": "x"}], "window_minutes": 10}})
        await store.put_docs(EVENT, "official_posts", {
            "o1": {"id": "o1", "account": "bluesky:politie", "platform": "bluesky",
                   "role": "police", "kind": "post", "reposts": 3, "replies": 1, "quotes": 0,
                   "likes": 9, "engagements": 13, "distinct_accounts": 4,
                   "estimated_audience": 1200, "audience_unknown": 0,
                   "first_seen": "2027-04-27T11:55:00Z",
                   "curve": [["2027-04-27T11:55:00Z", 2], ["2027-04-27T11:56:00Z", 11]],
                   "time_to_reposts": {"10": None, "1": 30.0}},
            "o0": {"id": "o0", "account": "bluesky:gemeente", "role": "municipality",
                   "first_seen": "2027-04-27T10:00:00Z", "curve": [],
                   "time_to_reposts": {}}})

    asyncio.run(fill())
    return store


def _get(route: str, store: MemoryStore, query: Mapping[str, str] | None = None,
         headers: Mapping[str, str] | None = None, access: ApiAccess = OPEN
         ) -> tuple[int, Any, dict[str, str]]:
    return asyncio.run(api_response(route, store, EVENT, query or {}, headers or {}, access,
                                    now=NOW))


def _is_flat(rows: list[dict[str, Any]]) -> bool:
    return all(v is None or isinstance(v, str | int | float | bool)
               for row in rows for v in row.values())


# ---------------------------------------------------------------- access


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),  # noqa: S104
    ("10.0.0.5", False), ("worker.example", False), ("", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bearer_compare() -> None:
    assert bearer_ok({"Authorization": f"Bearer {TOKEN}"}, TOKEN)
    assert bearer_ok({"authorization": f"bearer  {TOKEN} "}, TOKEN)
    assert not bearer_ok({"Authorization": f"Bearer {TOKEN}x"}, TOKEN)
    assert not bearer_ok({"Authorization": f"Basic {TOKEN}"}, TOKEN)
    assert not bearer_ok({"Authorization": TOKEN}, TOKEN)
    assert not bearer_ok({}, TOKEN)
    assert not bearer_ok({"Authorization": "Bearer "}, "")  # no token configured: never ok
    assert not bearer_ok({"Authorization": "Bearer é"}, TOKEN)  # non-ASCII does not crash


@pytest.mark.parametrize("route", sorted(API_ROUTES))
def test_access_rules(route: str) -> None:
    store = _store()
    with_token = ApiAccess(TOKEN, "0.0.0.0")  # noqa: S104
    status, body, headers = _get(route, store, access=with_token)
    assert status == 401 and "error" in body and headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(route, store, headers=_auth("wrong"), access=with_token)[0] == 401
    assert _get(route, store, headers=_auth(), access=with_token)[0] == 200
    # a token is required even on loopback once it is set
    assert _get(route, store, access=ApiAccess(TOKEN, "127.0.0.1"))[0] == 401
    # no token: loopback answers, any other bind address is refused
    assert _get(route, store, access=ApiAccess("", "127.0.0.1"))[0] == 200
    status, body, _ = _get(route, store, access=ApiAccess("", "0.0.0.0"))  # noqa: S104
    assert status == 403 and "CROWDWATCH_API_TOKEN" in body["error"]
    assert _get(route, store, headers=_auth(), access=ApiAccess("", "10.1.2.3"))[0] == 403


# ---------------------------------------------------------------- endpoints


def test_clusters_top_n_flat_and_ranked() -> None:
    store = _store()
    status, rows, headers = _get("clusters", store)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert [r["id"] for r in rows] == ["c3", "c2", "c1"]  # score, then size
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert _is_flat([{k: v for k, v in r.items() if k != "sample_posts"} for r in rows])
    top = rows[0]
    assert top["sample_posts"] == [{"id": "p1", "text": "Bom op de Dam?"},
                                   {"id": "p2", "text": "x"}]
    assert top["sample_post_ids"] == "p1, p2"
    assert top["stance_query"] == 3 and top["stance_deny"] == 2
    assert top["top_terms"] == "bom, dam" and top["sample_text"] == "Bom op de Dam?"
    assert top["samples"] == 2 and top["idle_s"] == 60.0 and top["event"] == EVENT
    assert "top_spreaders" not in top  # pseudonyms stay in Redis
    assert (top["drivers_claim"], top["drivers_spread"], top["drivers_doubt"],
            top["drivers_sources"]) == (0.85, 1.2, 0.3, 0.01)
    assert top["why"] == "spread +1.2, claim +0.8, doubt +0.3" and "drivers" not in top
    assert [r["id"] for r in _get("clusters", store, {"top": "1"})[1]] == ["c3"]
    for bad in ("0", "-1", "x", "501"):
        status, body, _ = _get("clusters", store, {"top": bad})
        assert status == 400 and "top" in body["error"]
    assert _get("clusters", MemoryStore())[:2] == (200, [])


def test_webcare_oldest_unanswered_first_with_age() -> None:
    store = _store()
    status, rows, _ = _get("webcare", store)
    assert status == 200 and [r["id"] for r in rows] == ["q3", "q1"]
    assert [r["age_s"] for r in rows] == [1800.0, 600.0]
    assert all("event" in r and r["event"] == EVENT for r in rows)  # not the change type
    assert _is_flat(rows)
    rows = _get("webcare", store, {"all": "1"})[1]
    assert [r["id"] for r in rows] == ["q3", "q1", "q2"]
    assert rows[-1]["age_s"] is None and rows[-1]["response_s"] == 300.0
    assert _get("webcare", store, {"all": "maybe"})[0] == 400
    assert [r["id"] for r in _get("webcare", store, {"all": "0"})[1]] == ["q3", "q1"]


def test_rebuttals_join_links_and_races() -> None:
    store = _store()
    status, rows, _ = _get("rebuttals", store)
    assert status == 200 and len(rows) == 1
    (row,) = rows
    assert row["official_post"] == "o1" and row["cluster"] == "c2"
    assert row["link_source"] == "manual" and row["linked"] is True
    assert row["state"] == "firing" and row["reach_ratio"] == 0.1 and row["episodes"] == 1
    assert _is_flat(rows)

    async def add_link() -> None:  # a link whose race has not been computed yet
        await store.put_docs(EVENT, "rebuttal_links", {"o2|c1": {
            "official_post": "o2", "cluster": "c1", "source": "accepted", "at": "x"}})

    asyncio.run(add_link())
    rows = _get("rebuttals", store)[1]
    assert [(r["official_post"], r["state"]) for r in rows] == [("o1", "firing"), ("o2", None)]


def test_official_posts_newest_first_without_nested_values() -> None:
    status, rows, _ = _get("official_posts", _store())
    assert status == 200 and [r["id"] for r in rows] == ["o1", "o0"]
    assert _is_flat(rows)
    o1 = rows[0]
    assert o1["engagements"] == 13 and o1["active_minutes"] == 2
    assert o1["last_engagement_minute"] == "2027-04-27T11:56:00Z"
    assert o1["time_to_1_reposts_s"] == 30.0 and o1["time_to_10_reposts_s"] is None
    assert list(o1).index("time_to_1_reposts_s") < list(o1).index("time_to_10_reposts_s")
    assert "curve" not in o1


def test_unknown_route_and_store_failure(caplog: pytest.LogCaptureFixture) -> None:
    assert _get("nope", _store())[0] == 404

    class Broken(MemoryStore):
        async def top_clusters(self, event: str, n: int) -> list[dict[str, Any]]:
            raise ConnectionError("redis down at redis://:pw@host")

    with caplog.at_level(logging.WARNING):
        status, body, headers = _get("clusters", Broken())
    assert status == 503 and headers["Retry-After"] == "5"
    assert "pw" not in caplog.text and "pw" not in str(body)


# ---------------------------------------------------------------- the real pages


def _pipeline(tmp_path: Path, **kw: Any) -> Pipeline:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", app_id=f"test-api-{tmp_path.name}",
                        data_dir=tmp_path, **kw)
    store = _store()
    pipeline = Pipeline(settings, store=store, registry=CollectorRegistry(), event=None)
    pipeline.update_lag_metrics = lambda: {}  # type: ignore[method-assign]  # no consumer here
    return pipeline


def _serve(pipeline: Pipeline, requests: list[tuple[str, dict[str, str]]]
           ) -> list[tuple[int, Any, dict[str, str]]]:
    async def run() -> list[tuple[int, Any, dict[str, str]]]:
        web: Any = pipeline.app.web  # faust's aiohttp driver
        web_app = web.web_app
        out = []
        async with TestClient(TestServer(web_app)) as client:
            for path, headers in requests:
                resp = await client.get(path, headers=headers)
                ctype = resp.headers.get("Content-Type", "")
                body = await resp.json() if "json" in ctype else await resp.text()
                out.append((resp.status, body, dict(resp.headers)))
        return out

    try:
        return asyncio.run(run())
    finally:
        pipeline.executor.shutdown(wait=False)
        pipeline.score_executor.shutdown(wait=False)


def test_pages_with_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        pipeline = _pipeline(tmp_path, api_token=TOKEN, metrics_token="m3trics")
        pipeline.event_name = EVENT  # the store above holds this event
        results = _serve(pipeline, [
            ("/api/clusters?top=2", {}),
            ("/api/clusters?top=2", _auth()),
            ("/api/webcare?all=1", _auth()),
            ("/api/rebuttals", _auth()),
            ("/api/official_posts", _auth()),
            ("/api/clusters?top=zero", _auth()),
            ("/metrics", {}),
            ("/metrics", _auth()),
            ("/metrics", _auth("m3trics")),
        ])
    statuses = [r[0] for r in results]
    assert statuses == [401, 200, 200, 200, 200, 400, 401, 401, 200]
    assert [r["id"] for r in results[1][1]] == ["c3", "c2"]
    assert results[1][2]["Content-Type"].startswith("application/json")
    assert [r["id"] for r in results[2][1]] == ["q3", "q1", "q2"]
    assert "crowdwatch_posts_consumed_total" in results[8][1]
    assert TOKEN not in caplog.text and "m3trics" not in caplog.text


def test_pages_without_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = _pipeline(tmp_path)  # 127.0.0.1: open, as /metrics always was
    pipeline.event_name = EVENT
    statuses = [r[0] for r in _serve(pipeline, [("/api/clusters", {}), ("/metrics", {})])]
    assert statuses == [200, 200]
    with caplog.at_level(logging.WARNING):
        exposed = _pipeline(tmp_path / "x", web_host="0.0.0.0")  # noqa: S104
    assert "never expose citizen data unauthenticated" in caplog.text
    status, body, _ = _serve(exposed, [("/api/webcare", {})])[0]
    assert status == 403 and "CROWDWATCH_API_TOKEN" in body["error"]
