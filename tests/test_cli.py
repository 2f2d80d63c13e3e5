"""The command line as a user runs it (typer's runner in-process; the demo as a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app
from streams.runtime import PACKAGED_EVENT

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner(env={"CROWDWATCH_SENTIMENT_MODEL": "off"})


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\n")[:-1]


@pytest.fixture
def mixed_input(tmp_path: Path) -> Path:
    good = [
        {"id": "a1", "text": "Wat een drukte op de Dam #koningsdag", "platform": "twitter"},
        {"id": "a2", "text": "Amazing vibes at Museumplein #kingsday", "lang": "en"},
        {"id": "a3", "text": "Gedrang bij het station", "geo": {"lat": 52.3787, "lon": 4.9},
         "extra_field": {"kept": True}},
        {"id": "a1", "text": "Wat een drukte op de Dam #koningsdag", "platform": "twitter"},
    ]
    raw = [json.dumps(g).encode() for g in good]
    raw[2:2] = [b"not json", b'{"id": "x"}', b"\xff\xfe", b""]
    path = tmp_path / "in.posts.jsonl"
    path.write_bytes(b"\n".join(raw))  # no newline at the end: the last line still counts
    return path


def test_score_outputs_plus_rejects_equal_lines_in(mixed_input: Path, tmp_path: Path) -> None:
    out, rej, summ = tmp_path / "out.jsonl", tmp_path / "rej.jsonl", tmp_path / "summary.json"
    result = runner.invoke(app, ["score", str(mixed_input), "--out", str(out), "--rejects",
                                 str(rej), "--summary", str(summ), "--event", str(PACKAGED_EVENT)])
    assert result.exit_code == 0, result.output
    outs = [json.loads(x) for x in _lines(out)]
    rejects = [json.loads(x) for x in _lines(rej)]
    assert len(outs) + len(rejects) == 8
    assert [o["id"] for o in outs] == ["a1", "a2", "a3", "a1"]
    assert {r["reason"] for r in rejects} == {"not_json", "missing_text", "invalid_utf8"}
    assert sorted(r["line"] for r in rejects) == [3, 4, 5, 6]
    assert all(r["detail"] and r["original_b64"] is not None for r in rejects)
    first = outs[0]
    for key in ("id", "lang", "areas", "keywords", "topics"):
        assert key in first
    assert first["areas"] == ["Dam"] and first["lang"] == "nl"
    assert outs[2]["areas"] == ["Centraal Station"] and outs[2]["extra_field"] == {"kept": True}
    summary = json.loads(summ.read_text())
    assert summary["lines_in"] == 8 and summary["lines_out"] == 4 and summary["rejects"] == 4
    assert summary["unique_posts"] == 3
    assert summary["by_reject_reason"] == {"not_json": 2, "missing_text": 1, "invalid_utf8": 1}
    assert summary["by_area"]["Dam"] == 1  # a1 twice, counted once
    assert summary["by_lang"]["nl"] >= 1


def test_score_without_event_still_enriches(mixed_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(mixed_input), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert all(json.loads(x)["areas"] == [] for x in _lines(out))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "missing.jsonl", "--out", "o.jsonl"], "no such file"),
        (["score", ".", "--out", "o.jsonl"], "is a directory"),
        (["score", "IN", "--out", "/nonexistent-dir/o.jsonl"], "cannot write"),
        (["score", "IN", "--out", "IN"], "overwrite the input"),
        (["score", "IN", "--out", "o.jsonl", "--event", "nope.yaml"], "no such file"),
    ],
)
def test_score_errors_are_one_clear_line(args: list[str], message: str, mixed_input: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = [str(mixed_input) if a == "IN" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_score_a_real_shared_file(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "replay" / "crisislex-2013_Alberta_floods.posts.jsonl"
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["score", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(_lines(out)) == len(_lines(src))


def test_event_check_and_example(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["event", "check", str(PACKAGED_EVENT)])
    assert ok.exit_code == 0 and "7 areas" in ok.output
    example = runner.invoke(app, ["event", "example"])
    assert example.exit_code == 0 and "koningsdag-amsterdam" in example.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(example.output.replace("name: koningsdag-amsterdam", "name: Bad Name")
                   .replace("languages: [nl, en]", "languages: [dutch]"))
    res = runner.invoke(app, ["event", "check", str(bad)])
    assert res.exit_code == 1
    assert "name:" in res.output and "languages" in res.output


def test_generate_writes_posts_and_truth(tmp_path: Path) -> None:
    res = runner.invoke(app, ["generate", "--scenario", "rumour-rebuttal", "--seed", "5",
                              "--posts", "800", "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    posts = _lines(tmp_path / "g" / "posts.jsonl")
    truth = json.loads((tmp_path / "g" / "truth.json").read_text())
    assert len(posts) == 800
    assert truth["rumour_posts"] and truth["questions"]
    bad = runner.invoke(app, ["generate", "--scenario", "nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown scenario" in bad.output


def test_replay_and_worker_need_kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDWATCH_STACK_FILE", str(tmp_path / "none.env"))
    monkeypatch.delenv("CROWDWATCH_KAFKA_BOOTSTRAP", raising=False)
    for args in (["replay", str(PACKAGED_EVENT)], ["worker"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "no Kafka configured" in res.output


def test_a_rumours_only_worker_needs_the_rumour_stage(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDWATCH_STACK_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("CROWDWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CROWDWATCH_WORKER_ROLE", "rumours")
    monkeypatch.setenv("CROWDWATCH_RUMOURS_ENABLED", "false")
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2 and "CROWDWATCH_RUMOURS_ENABLED is false" in res.output


def test_replay_rejects_contradicting_options(tmp_path: Path) -> None:
    res = runner.invoke(app, ["replay", "x.jsonl", "--speed", "2", "--max-rate", "10",
                              "--bootstrap", "127.0.0.1:1"])
    assert res.exit_code == 2 and "not both" in res.output


def test_demo_runs_on_the_embedded_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDWATCH_")}
    env.update(CROWDWATCH_STACK_FILE=str(tmp_path / "none.env"), CROWDWATCH_HOME=str(tmp_path))
    from streams.embedded import free_port

    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--duration", "12", "--plain",
         "--speed", "600", "--web-port", str(port)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded Tansu" in proc.stderr
    last = proc.stderr.strip().splitlines()
    finished = next(line for line in last if line.startswith("demo finished"))
    # "the worker consumed N = A accepted + D dead-lettered"
    numbers = [int(t.replace(",", "")) for t in finished.replace("=", " ").split()
               if t.replace(",", "").isdigit()]
    consumed, accepted, dead = numbers[1], numbers[2], numbers[3]
    assert consumed == accepted + dead and consumed > 500 and dead >= 1


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_score_adds_sentiment(tmp_path: Path, tiny_model: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": str(i), "text": t}) for i, t in enumerate(
        ["geweldig feest op de dam", "vreselijk", "geweldig feest op de dam"])) + "\n")
    out, summ = tmp_path / "o.jsonl", tmp_path / "s.json"
    res = runner.invoke(app, ["score", str(src), "--out", str(out), "--summary", str(summ),
                              "--sentiment-model", str(tiny_model)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in _lines(out)]
    assert [r["sentiment"] for r in rows] == ["positive", "negative", "positive"]
    assert all(-1 <= r["sentiment_score"] <= 1 for r in rows)
    assert json.loads(summ.read_text())["by_sentiment"] == {"positive": 2, "negative": 1}


def test_eval_sentiment_prints_the_report(tmp_path: Path, tiny_model: Path) -> None:
    texts = {"1": ("geweldig", "positive"), "2": ("vreselijk", "negative"),
             "3": ("de tram", "neutral"), "4": ("love", "positive"), "5": ("hate", "neutral")}
    posts = tmp_path / "p.jsonl"
    labels = tmp_path / "l.jsonl"
    posts.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, (t, _) in texts.items()))
    labels.write_text("\n".join(json.dumps({"id": i, "sentiment": lab})
                                for i, (_, lab) in texts.items()))
    report = tmp_path / "r.json"
    res = runner.invoke(app, ["eval", "sentiment", str(posts), str(labels), "--sentiment-model",
                              str(tiny_model), "--json", str(report)])
    assert res.exit_code == 0, res.output
    assert "macro-recall" in res.output and "confusion" in res.output
    data = json.loads(report.read_text())
    assert data["n"] == 5 and data["confusion"]["negative"]["negative"] == 1
    bad = runner.invoke(app, ["eval", "sentiment", str(posts), str(tmp_path / "none.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_the_rumours_table_says_why_a_cluster_scores_what_it_scores() -> None:
    """`crowdwatch rumours` shows the two strongest score drivers next to the score, so an
    officer sees at once whether a flag rests on the claim, its spread or the crowd's doubt."""
    from rich.console import Console

    from streams.cli import _cluster_table

    rows = [{"id": "c1", "rumour_score": 0.62, "state": "growing", "size": 35, "velocity": 2.0,
             "stance": {"query": 1}, "first_seen": "2027-04-27T12:00:00Z",
             "summary": "Got a vintage jacket for 5 euros", "top_terms": ["jacket"],
             "flagged": True,
             "drivers": {"claim": -0.56, "spread": 0.74, "doubt": -0.13, "sources": 0.17}},
            {"id": "c2", "rumour_score": 0.3, "state": "emerging", "size": 2}]  # no drivers
    console = Console(width=200, record=True)
    console.print(_cluster_table(rows, "t"))
    text = console.export_text()
    assert "why" in text and "spread +0.7" in text and "claim -0.6" in text
    assert "doubt" not in text  # only the two strongest
    assert "c2" in text


def test_the_demo_view_shows_why_its_clusters_score() -> None:
    from prometheus_client import CollectorRegistry
    from rich.console import Console

    from streams.demo import DemoView

    view = DemoView("demo", CollectorRegistry(), 10)
    view.clusters = [{"rumour_score": 0.71, "state": "growing", "size": 12, "flagged": True,
                      "stance": {"query": 2}, "summary": "Bom bij de Dam?",
                      "drivers": {"claim": 0.9, "spread": 0.3, "doubt": 0.2, "sources": 0.0}},
                     {"rumour_score": 0.2, "state": "emerging", "size": 2, "drivers": None}]
    console = Console(width=160, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "why" in text and "claim +0.9, spread +0.3" in text and "Bom bij de Dam?" in text


def test_eval_reads_the_dutch_test_sets_as_they_are(tmp_path: Path) -> None:
    """The README's commands on the Dutch test sets (models/training/data): labels beside
    the posts, parents through reply_to; the stance figure is the one the model records."""
    from models.stance import load_default_stance
    from models.training.train_rumour import DEFAULT_TEST as CLAIMS_TEST
    from models.training.train_stance import DEFAULT_TEST as STANCE_TEST

    report = tmp_path / "stance.json"
    res = runner.invoke(app, ["eval", "stance", f"{STANCE_TEST}.posts.jsonl",
                              "--json", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    recorded = load_default_stance().meta["test_sets"]["nl-stance-test"]
    assert data["n"] == 100 and data["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-4)
    report = tmp_path / "rumours.json"
    res = runner.invoke(app, ["eval", "rumours", f"{CLAIMS_TEST}.posts.jsonl",
                              "--embedder", "hashing", "--json", str(report)])
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["online"]["n"] == 150
