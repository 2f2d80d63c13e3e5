"""A worker with its rumour stage in a child process (``CROWDWATCH_RUMOUR_PROCESS``) on the
real local stack: the two sides split the work, every post is clustered once, and they live
and die together."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from streams.embedded import free_port
from tests.integration.conftest import Worker, run_cli, wait_for

RUMOUR_MATCHES = ("new", "thread", "near_duplicate", "semantic")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped) counts as ended
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _start(worker_factory: Any) -> tuple[Worker, Worker, dict[str, Any]]:
    from streams.runtime import PACKAGED_EVENT

    port = free_port()
    w: Worker = worker_factory(event=PACKAGED_EVENT, rumour_process=True, rumour_web_port=port)
    w.start()
    body = w.wait_ready()
    # the child as a Worker handle on its own port (its process is the worker's child)
    child = Worker(w.settings.model_copy(update={"web_port": port,
                                                 "app_id": w.settings.rumour_app_id}),
                   w.env, w.log)
    child.proc = w.proc  # wait_ready checks that the worker (its parent) still runs
    child_body = child.wait_ready()
    return w, child, {"worker": body, "child": child_body}


def test_the_rumour_process_clusters_what_the_worker_enriches(worker_factory: Any,
                                                             tmp_path: Path) -> None:
    w, child, health = _start(worker_factory)
    assert health["worker"]["role"] == "ingest"
    assert health["worker"]["rumour_process"]["running"] is True
    assert health["child"]["role"] == "rumours"
    assert all(p.startswith(w.settings.topic_raw) for p in health["worker"]["assigned_partitions"])
    assert all(p.startswith(w.settings.topic_claims)
               for p in health["child"]["assigned_partitions"])

    out = tmp_path / "traffic"
    gen = run_cli("generate", "--scenario", "rumour-rebuttal", "--seed", "5", "--posts", "800",
                  "--out", str(out), env={**os.environ})
    assert gen.returncode == 0, gen.stderr
    posts = [json.loads(x) for x in (out / "posts.jsonl").read_text(encoding="utf-8").splitlines()]
    for _ in range(2):  # re-delivery changes no count
        rep = run_cli("replay", str(out / "posts.jsonl"), "--topic", w.settings.topic_raw,
                      env=w.env)
        assert rep.returncode == 0, rep.stderr

    tracked = sum(1 for p in posts if p.get("kind") not in ("like", "delete"))

    def clustered(x: Worker) -> float:
        return sum(x.metric("crowdwatch_rumour_posts_total", {"match": m})
                   for m in RUMOUR_MATCHES)

    assert wait_for(lambda: clustered(child) >= tracked), "the rumour process did not keep up"
    time.sleep(3)
    assert clustered(child) == tracked  # once per post id
    assert clustered(w) == 0  # the ingest side runs no rumour stage
    assert w.metric("crowdwatch_posts_accepted_total") >= len(posts)
    assert child.metric("crowdwatch_posts_accepted_total") == 0  # no enrichment there
    res = run_cli("rumours", "--top", "3", "--json", env=w.env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout), "no clusters in Redis"


def test_the_worker_and_its_rumour_process_end_together(worker_factory: Any) -> None:
    w, _, health = _start(worker_factory)
    pid = health["worker"]["rumour_process"]["pid"]
    assert w.proc is not None
    # the child dies: the worker stops with exit code 1 (its supervisor restarts both)
    os.kill(pid, signal.SIGKILL)
    assert w.proc.wait(timeout=60) == 1, w.log.read_text()[-3000:]
    assert "rumour process" in w.log.read_text()

    # the worker is killed: its child gets SIGTERM from the kernel and stops
    w.start()
    body = w.wait_ready()
    pid = body["rumour_process"]["pid"]
    assert _alive(pid)
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait()
    assert wait_for(lambda: not _alive(pid), timeout=60), "the rumour process outlived its worker"
