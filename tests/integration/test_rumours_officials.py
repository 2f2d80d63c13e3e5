"""Rumour clusters, official reach, rebuttal links and the webcare queue on the real local
stack: generated traffic with known truth -> `crowdwatch replay` -> a real worker ->
clusters.events, Redis state, the CLI and /metrics."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import Worker, consume_all, run_cli, wait_for

EVENT = "koningsdag-amsterdam"


def test_rumours_reach_and_webcare_on_the_real_stack(worker_factory: Any,
                                                    tmp_path: Path) -> None:
    from streams.runtime import PACKAGED_EVENT

    w: Worker = worker_factory(event=PACKAGED_EVENT)
    w.start()
    w.wait_ready()
    out = tmp_path / "traffic"
    gen = run_cli("generate", "--scenario", "rumour-rebuttal", "--seed", "11", "--posts", "1500",
                  "--out", str(out), env={**os.environ})
    assert gen.returncode == 0, gen.stderr
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    posts = [json.loads(x) for x in (out / "posts.jsonl").read_text(encoding="utf-8").splitlines()]
    rep = run_cli("replay", str(out / "posts.jsonl"), "--topic", w.settings.topic_raw, env=w.env)
    assert rep.returncode == 0, rep.stderr
    # and once more: re-delivery must not change any count
    rep = run_cli("replay", str(out / "posts.jsonl"), "--topic", w.settings.topic_raw, env=w.env)
    assert rep.returncode == 0, rep.stderr

    s = w.settings
    tracked = sum(1 for p in posts if p.get("kind") not in ("like", "delete"))
    assert wait_for(lambda: sum(w.metric("crowdwatch_rumour_posts_total", {"match": m})
                             for m in ("new", "thread", "near_duplicate", "semantic"))
                 >= tracked), "the rumour stage did not cluster every post"
    time.sleep(3)  # the re-delivered copies are behind the originals
    clustered = sum(w.metric("crowdwatch_rumour_posts_total", {"match": m})
                    for m in ("new", "thread", "near_duplicate", "semantic"))
    assert clustered == tracked  # once per post id

    events = [json.loads(r.value) for r in consume_all(s, [s.topic_cluster_events], 1,
                                                       timeout=30)]
    assert events and {e["event"] for e in events} == {EVENT}

    env = w.env
    res = run_cli("rumours", "--top", "5", "--json", env=env)
    assert res.returncode == 0, res.stderr
    top = json.loads(res.stdout)
    assert top and {"summary", "rumour_score", "state", "sample_posts"} <= set(top[0])
    rumour = set(truth["rumour_posts"])
    assert any(set(c["sample_post_ids"]) & rumour for c in top)

    # exact reach of every official post, unchanged by the second replay
    def reach() -> dict[str, Any]:
        res = run_cli("rebut", env=env)  # also proves the CLI reads the state
        assert res.returncode == 0, res.stderr
        return _docs(w, "official_posts")

    want = {o["id"]: (o["reposts"], o["replies"], o["quotes"]) for o in truth["official_posts"]}
    got: dict[str, Any] = wait_for(lambda: (d := reach()) and all(
        (d.get(k, {}).get("reposts"), d.get(k, {}).get("replies"), d.get(k, {}).get("quotes"))
        == v for k, v in want.items() if v != (0, 0, 0)) and d)
    assert got, "official reach in Redis never matched the truth"
    for pid, (reposts, replies, quotes) in want.items():
        if pid in got:
            assert (got[pid]["reposts"], got[pid]["replies"], got[pid]["quotes"]) == \
                (reposts, replies, quotes), pid

    # the webcare queue holds exactly the planted questions
    questions = {q["id"] for q in truth["questions"]}
    webcare = wait_for(lambda: (d := _docs(w, "webcare")) and set(d) == questions and d)
    assert webcare and set(webcare) == questions
    assert run_cli("webcare", "--all", env=env).returncode == 0

    # official accounts and manual rebuttal links through the CLI reach the worker
    assert run_cli("official", "add", "bluesky", "@brandweer-test.bsky.social", "fire",
                   env=env).returncode == 0
    listed = run_cli("official", "list", env={**env, "COLUMNS": "200"})
    assert "brandweer-test.bsky.social" in listed.stdout
    assert run_cli("official", "remove", "bluesky", "brandweer-test.bsky.social",
                   env=env).returncode == 0
    cluster = top[0]["id"]
    official = truth["official_posts"][0]["id"]
    assert run_cli("rebut", official, cluster, env=env).returncode == 0
    races = wait_for(lambda: _docs(w, "races").get(f"{official}|{cluster}"), timeout=30)
    assert races and races["cluster"] == cluster
    # the state gauges follow batches at most once a second and every tick (5 s)
    assert wait_for(lambda: w.metric("crowdwatch_official_posts_tracked") >= len(want),
                    timeout=30)


def _docs(w: Worker, kind: str) -> dict[str, Any]:
    import asyncio

    from streams.state import RedisStore

    s = w.settings

    async def read() -> dict[str, Any]:
        store = RedisStore(s.redis_url.get_secret_value(), prefix=s.redis_prefix)
        try:
            return await store.get_docs(EVENT, kind)
        finally:
            await store.close()

    return asyncio.run(read())
