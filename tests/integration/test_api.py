"""The worker's /api/* and /metrics tokens, and its Grafana annotations, on the real local
stack: generated traffic -> `crowdwatch replay` -> a real worker (Redis state) -> HTTP with
and without the token; a loopback stand-in for Grafana records the annotations."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.conftest import Worker, run_cli, wait_for
from tests.test_grafana_push import TOKEN as GRAFANA_TOKEN
from tests.test_grafana_push import FakeGrafana

API_TOKEN = "it-api-token-7f3a"
METRICS_TOKEN = "it-metrics-token-1c9e"
EVENT = "koningsdag-amsterdam"


def _get(w: Worker, path: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(w.url + path)  # noqa: S310  # http://127.0.0.1 only
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
            body = r.read().decode()
            return int(r.status), json.loads(body) if "json" in r.headers.get(
                "Content-Type", "") else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode() or "null")


def test_api_tokens_and_annotations_on_the_real_stack(worker_factory: Any,
                                                      tmp_path: Path) -> None:
    from streams.runtime import PACKAGED_EVENT

    grafana = FakeGrafana()
    try:
        w: Worker = worker_factory(event=PACKAGED_EVENT, api_token=API_TOKEN,
                                   metrics_token=METRICS_TOKEN, grafana_url=grafana.url,
                                   grafana_token=GRAFANA_TOKEN)
        w.env["CROWDWATCH_ANNOTATIONS_TICK_S"] = "0.5"
        w.start()
        # wait_ready polls /health, which stays open
        w.wait_ready()
        out = tmp_path / "traffic"
        gen = run_cli("generate", "--scenario", "rumour-rebuttal", "--seed", "3", "--posts",
                      "1200", "--out", str(out), env={**os.environ})
        assert gen.returncode == 0, gen.stderr
        truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
        rep = run_cli("replay", str(out / "posts.jsonl"), "--topic", w.settings.topic_raw,
                      env=w.env)
        assert rep.returncode == 0, rep.stderr

        clusters = wait_for(lambda: (r := _get(w, "/api/clusters?top=5", API_TOKEN))[0] == 200
                         and len(r[1]) >= 1 and r[1])
        assert clusters, "no clusters through /api/clusters"
        assert [c["rank"] for c in clusters] == list(range(1, len(clusters) + 1))
        scores = [c["rumour_score"] for c in clusters]
        assert scores == sorted(scores, reverse=True)
        assert {"id", "summary", "rumour_score", "state", "sample_posts"} <= set(clusters[0])

        # without the token, or with a wrong one: 401 on every route, no data
        for route in ("clusters", "rebuttals", "webcare", "official_posts"):
            status, body = _get(w, f"/api/{route}")
            assert status == 401 and set(body) == {"error"}, (route, body)
            assert _get(w, f"/api/{route}", "wrong")[0] == 401
        assert _get(w, "/api/clusters?top=0", API_TOKEN)[0] == 400

        officials = {o["id"] for o in truth["official_posts"]}
        posts = wait_for(lambda: (r := _get(w, "/api/official_posts", API_TOKEN)[1])
                      and {p["id"] for p in r} == officials and r)
        assert posts, "official posts never all reached /api/official_posts"
        questions = {q["id"] for q in truth["questions"]}
        webcare = wait_for(lambda: {i["id"] for i in _get(w, "/api/webcare?all=1", API_TOKEN)[1]}
                        == questions)
        assert webcare, "webcare items differ from the planted questions"
        status, rebuttals = _get(w, "/api/rebuttals", API_TOKEN)
        assert status == 200 and isinstance(rebuttals, list)

        # /metrics needs its own token
        assert _get(w, "/metrics")[0] == 401
        assert _get(w, "/metrics", API_TOKEN)[0] == 401
        status, text = _get(w, "/metrics", METRICS_TOKEN)
        assert status == 200 and "crowdwatch_posts_consumed_total" in text

        # annotations: one per official post and per flagged cluster, with Grafana's token
        def annotations() -> list[dict[str, Any]]:
            return [r for r in grafana.requests if r["path"] == "/api/annotations"]

        assert wait_for(lambda: {a["body"]["text"].split(" — ")[-1].split(",")[0]
                              for a in annotations() if "official" in a["body"]["tags"]}
                     >= officials, timeout=30), annotations()
        anns = annotations()
        assert all(a["auth"] == f"Bearer {GRAFANA_TOKEN}" for a in anns)
        assert all(a["body"]["tags"][0] == "crowdwatch" and EVENT in a["body"]["tags"]
                   for a in anns)
        texts = [a["body"]["text"] for a in anns]
        assert len(texts) == len(set(texts))  # idempotent
        flagged = {c["id"] for c in _get(w, "/api/clusters?top=500", API_TOKEN)[1]
                   if c["flagged"]}
        assert flagged, "the planted rumour was not flagged"

        def annotated_clusters() -> set[str]:
            return {a["body"]["text"].split("(cluster ")[1].split(",")[0].rstrip(")")
                    for a in annotations() if "rumour" in a["body"]["tags"]}

        assert wait_for(lambda: flagged <= annotated_clusters(), timeout=15), \
            (flagged, annotated_clusters())
        log = w.log.read_text(errors="replace")
        assert API_TOKEN not in log and METRICS_TOKEN not in log and GRAFANA_TOKEN not in log
    finally:
        grafana.stop()
