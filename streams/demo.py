"""``crowdwatch demo``: the whole pipeline on one machine, with nothing installed.

Without configured services it starts an embedded broker (Tansu, memory only) and
keeps state in memory; with ``CROWDWATCH_KAFKA_BOOTSTRAP`` / ``CROWDWATCH_REDIS_URL``
set (e.g. by ``crowdwatch stack up``) it uses those, on separate ``demo.*`` topics.
It replays the bundled synthetic King's Day sample (plus a few deliberately
malformed records, to show dead-lettering) through an in-process worker, serves
``/metrics`` and ``/health`` on 127.0.0.1 and shows a live terminal view.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from models.event import load_event
from models.rumour import why
from streams.embedded import EmbeddedBroker
from streams.kafka_admin import ensure_topics
from streams.replay import replay
from streams.runtime import (
    PACKAGED_EVENT,
    sentiment_scorer_from,
    shift_config_from,
    store_from,
)
from streams.settings import Settings
from streams.state import MemoryStore

SAMPLE = Path(__file__).resolve().parent / "data" / "demo-koningsdag.synthetic.posts.jsonl"
MALFORMED_EVERY = 400
MALFORMED = (
    b"this line is not JSON",
    b'{"text": "a post without an id"}',
    b'{"id": "no-text"}',
    b'["a list", "not an object"]',
    b'{"id": "bad-type", "text": 42}',
    b"\xff\xfe not UTF-8",
)


def demo_input(dest: Path) -> int:
    """The sample with a malformed record after every ``MALFORMED_EVERY`` posts; returns lines."""
    lines = SAMPLE.read_bytes().splitlines()
    out: list[bytes] = []
    for i, line in enumerate(lines, 1):
        out.append(line)
        if i % MALFORMED_EVERY == 0:
            out.append(MALFORMED[(i // MALFORMED_EVERY) % len(MALFORMED)])
    dest.write_bytes(b"\n".join(out) + b"\n")
    return len(out)


def _value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


def _labelled(registry: CollectorRegistry, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and sample.value:
                out[sample.labels[label]] = out.get(sample.labels[label], 0.0) + sample.value
    return out


class DemoView:
    def __init__(self, title: str, registry: CollectorRegistry, total: int) -> None:
        self.title = title
        self.registry = registry
        self.total = total
        self.sent = 0
        self.replay_done = False
        self._history: list[tuple[float, float]] = []
        self.clusters: list[dict[str, Any]] = []  # top rumour clusters, refreshed by _run

    def consumed(self) -> float:
        return _value(self.registry, "crowdwatch_posts_consumed_total")

    def rate(self) -> float:
        now = time.monotonic()
        self._history.append((now, self.consumed()))
        self._history = [(t, c) for t, c in self._history if now - t <= 3.0]
        (t0, c0), (t1, c1) = self._history[0], self._history[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def counts(self) -> dict[str, float]:
        r = self.registry
        return {
            "consumed": self.consumed(),
            "accepted": _value(r, "crowdwatch_posts_accepted_total"),
            "dead": sum(_labelled(r, "crowdwatch_posts_rejected_total", "reason").values()),
            "duplicates": _value(r, "crowdwatch_posts_duplicate_total"),
        }

    def line(self) -> str:
        c = self.counts()
        flagged = sum(_labelled(self.registry, "crowdwatch_rumour_flagged_clusters",
                                "event").values())
        return (f"sent {self.sent}/{self.total}  consumed {c['consumed']:.0f}  "
                f"accepted {c['accepted']:.0f}  dead-lettered {c['dead']:.0f}  "
                f"{self.rate():.0f} posts/s  rumours flagged {flagged:.0f}")

    def render(self) -> Any:
        r = self.registry
        c = self.counts()
        head = Table.grid(padding=(0, 2))
        head.add_row("replayed", f"{self.sent:,} / {self.total:,}"
                     + ("  [green](done)[/]" if self.replay_done else ""))
        head.add_row("throughput", f"{self.rate():,.0f} posts/s")
        head.add_row("consumed", f"{c['consumed']:,.0f} = {c['accepted']:,.0f} accepted "
                     f"+ {c['dead']:,.0f} dead-lettered")
        head.add_row("duplicates", f"{c['duplicates']:,.0f} (not counted twice)")

        def top(name: str, label: str, title: str, n: int = 8) -> Table:
            t = Table(title=title, expand=True, show_edge=False)
            t.add_column(label)
            t.add_column("posts", justify="right")
            values = _labelled(r, name, label)
            for key, val in sorted(values.items(), key=lambda kv: -kv[1])[:n]:
                t.add_row(key, f"{val:,.0f}")
            return t

        grid = Table.grid(expand=True)
        grid.add_row(
            top("crowdwatch_posts_by_lang_total", "lang", "languages"),
            top("crowdwatch_posts_by_area_total", "area", "areas"),
            top("crowdwatch_posts_by_topic_total", "topic", "topics"),
            top("crowdwatch_posts_rejected_total", "reason", "dead letters"),
        )
        parts: list[Any] = [head, grid]
        positive = _labelled(r, "crowdwatch_mood_positive_total", "area")
        negative = _labelled(r, "crowdwatch_mood_negative_total", "area")
        counts = _labelled(r, "crowdwatch_mood_score_count", "area")
        if counts:
            mood = Table(title="crowd mood per area (-1 negative .. +1 positive)", expand=True,
                         show_edge=False)
            mood.add_column("area")
            mood.add_column("mood", justify="right")
            mood.add_column("posts", justify="right")
            mood.add_column("")
            for area, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]:
                m = (positive.get(area, 0.0) - negative.get(area, 0.0)) / n
                colour = "red" if m < -0.1 else "green" if m > 0.1 else "yellow"
                bar = "█" * int(abs(m) * 20)
                mood.add_row(area, f"[{colour}]{m:+.2f}[/]", f"{n:,.0f}", f"[{colour}]{bar}[/]")
            parts.append(mood)
        shifts = [f"{s.labels['scope']} {s.labels['name']}" for metric in r.collect()
                  for s in metric.samples
                  if s.name == "crowdwatch_mood_shift_active" and s.value == 1]
        if shifts:
            parts.append(f"[bold red]negative mood shift: {', '.join(shifts)}[/]")
        if self.clusters:
            rum = Table(title="claim clusters, highest rumour score first (red: flagged)",
                        expand=True, show_edge=False)
            for col in ("score", "why", "state", "posts", "?/✗", "claim"):
                rum.add_column(col)
            for cl in self.clusters:
                stance = cl.get("stance") or {}
                rum.add_row(f"{float(cl.get('rumour_score') or 0):.2f}",
                            why(cl.get("drivers"), top=2),
                            str(cl.get("state")),
                            str(cl.get("size")),
                            str(int(stance.get("query", 0)) + int(stance.get("deny", 0))),
                            str(cl.get("summary") or "")[:90],
                            style="bold red" if cl.get("flagged") else "")
            parts.append(rum)
        return Panel(Group(*parts), title=self.title, subtitle="Ctrl-C to stop")


async def _run(settings: Settings, *, duration: float | None, speed: float, plain: bool,
               console: Console, broker_label: str) -> int:
    from streams.app import Pipeline

    event = load_event(PACKAGED_EVENT)
    registry = CollectorRegistry()
    ensure_topics(settings)
    store = store_from(settings) if settings.redis_configured else MemoryStore()
    try:
        scorer = sentiment_scorer_from(settings)
    except (OSError, ValueError, ImportError) as exc:
        console.print(f"[yellow]crowd mood off: sentiment model unavailable ({exc})[/]")
        scorer = None
    tracker = None
    if settings.rumours_enabled:
        from streams.rumours import tracker_from

        try:
            tracker = tracker_from(settings, event)
        except (OSError, ValueError, ImportError) as exc:
            console.print(f"[yellow]rumour clusters off: {exc}[/]")
    pipeline = Pipeline(settings, store=store, registry=registry, event=event, scorer=scorer,
                        shift=shift_config_from(settings), tracker=tracker)
    workdir = Path(tempfile.mkdtemp(prefix="crowdwatch-demo-"))
    total = demo_input(workdir / "demo.posts.jsonl")
    view = DemoView(f"crowdwatch demo — {event.title or event.name} — synthetic sample",
                    registry, total)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stop_replay = threading.Event()

    def run_replay() -> Any:
        def sent(n: int) -> None:
            view.sent += n

        result = replay([workdir / "demo.posts.jsonl"], settings, speed=speed, max_gap=2.0,
                        on_sent=sent, should_stop=stop_replay.is_set)
        view.replay_done = True
        return result

    console.print(f"broker: {broker_label}; state: "
                  f"{'Redis' if settings.redis_configured else 'memory'}; metrics: "
                  f"http://{settings.web_host}:{settings.web_port}/metrics", highlight=False)
    await pipeline.app.start()
    started = time.monotonic()
    replay_future = loop.run_in_executor(None, run_replay)
    live = None if plain else Live(view.render(), console=console, refresh_per_second=4)
    try:
        if live is not None:
            live.start()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5 if live else 1.0)
            if pipeline.rumours is not None:
                view.clusters = await store.top_clusters(pipeline.event_name, 5)
            if live is not None:
                live.update(view.render())
            else:
                console.print(view.line(), highlight=False, soft_wrap=True)
            if duration is not None and time.monotonic() - started >= duration:
                break
    finally:
        stop_replay.set()
        if live is not None:
            live.stop()
        summary = await replay_future
        deadline = time.monotonic() + 10.0  # let the worker drain what was sent
        while view.consumed() < summary.sent - summary.failed and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a metric
            await asyncio.sleep(0.2)
        await pipeline.app.stop()
        await pipeline.close()
    c = view.counts()
    console.print(
        f"demo finished: replayed {summary.sent - summary.failed:,} records; the worker consumed "
        f"{c['consumed']:,.0f} = {c['accepted']:,.0f} accepted + {c['dead']:,.0f} "
        f"dead-lettered; /metrics was http://{settings.web_host}:{settings.web_port}/metrics",
        highlight=False, soft_wrap=True)
    return 0


def run_demo(settings: Settings, *, duration: float | None, speed: float, plain: bool,
             console: Console) -> int:
    tag = f"crowdwatch-demo-{int(time.time())}"
    demo = settings.model_copy(update={
        "app_id": tag, "topic_raw": "demo.posts.raw", "topic_enriched": "demo.posts.enriched",
        "topic_deadletter": "demo.posts.deadletter",
        "data_dir": Path(tempfile.gettempdir()) / "crowdwatch-demo",
        "broker_session_timeout": min(settings.broker_session_timeout, 10.0),
        "batch_within": 0.1,
    })
    plain = plain or not console.is_terminal
    if settings.kafka_configured:
        return asyncio.run(_run(demo, duration=duration, speed=speed, plain=plain,
                                console=console, broker_label=settings.kafka_bootstrap))
    with EmbeddedBroker() as bootstrap:
        demo = demo.model_copy(update={"kafka_bootstrap": bootstrap})
        return asyncio.run(_run(demo, duration=duration, speed=speed, plain=plain,
                                console=console,
                                broker_label=f"embedded Tansu on {bootstrap} (memory only)"))
