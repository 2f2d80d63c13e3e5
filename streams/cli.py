"""The ``crowdwatch`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from models.event import EventConfigError
from streams.jsonl import InputError
from streams.settings import Settings, load_settings

app = typer.Typer(
    name="crowdwatch",
    help="Real-time social-media monitoring for command posts during large events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
event_app = typer.Typer(help="Event configuration files.", no_args_is_help=True)
stack_app = typer.Typer(help="Local services (Kafka, Redis, Prometheus, Alertmanager).",
                        no_args_is_help=True)
app.add_typer(event_app, name="event")
app.add_typer(stack_app, name="stack")

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic ValidationError: bad CROWDWATCH_* value
        raise fail(f"invalid settings: {exc}") from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err, transient=False,
    )


# ---------------------------------------------------------------- event


@event_app.command("check")
def event_check(path: Annotated[Path, typer.Argument(help="Event YAML file")]) -> None:
    """Validate an event file; print every problem with its location."""
    from models.event import load_event

    try:
        event = load_event(path)
    except EventConfigError as exc:
        err.print(f"[bold red]invalid event file[/]\n{exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(
        f"[green]ok[/] {event.name}: {len(event.areas)} areas, {len(event.topics)} topics, "
        f"{sum(len(t.terms) for t in event.topics)} keywords, "
        f"{len(event.official_accounts)} official accounts, languages {', '.join(event.languages)}"
    )


@event_app.command("example")
def event_example() -> None:
    """Print the example event (King's Day in Amsterdam) to start your own from."""
    from streams.runtime import PACKAGED_EVENT

    sys.stdout.write(PACKAGED_EVENT.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- score


@app.command()
def score(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT.jsonl", help="Canonical posts")],
    out_path: Annotated[Path, typer.Option("--out", help="Enriched posts (JSON Lines)")],
    rejects_path: Annotated[Path | None, typer.Option("--rejects", help="Rejected lines")] = None,
    summary_path: Annotated[Path | None, typer.Option("--summary", help="JSON summary")] = None,
    event_path: Annotated[Path | None, typer.Option("--event", help="Event YAML")] = None,
    sentiment_model: Annotated[str | None, typer.Option(
        help="'default', 'off' or a local model directory (CROWDWATCH_SENTIMENT_MODEL)")] = None,
    rumours: Annotated[bool | None, typer.Option(
        "--rumours/--no-rumours", help="Cluster claims and add stance, cluster, rumour_score "
        "(CROWDWATCH_RUMOURS_ENABLED)")] = None,
    embedder: Annotated[str | None, typer.Option(
        help="Claim embeddings: default, hashing, off or a local model directory "
        "(CROWDWATCH_CLUSTER_EMBEDDER)")] = None,
    sort: Annotated[bool, typer.Option(
        "--sort", help="Process the posts in created_at order (reads the whole file into "
        "memory; output in that order, rejects keep their line numbers): for exports that "
        "are newest first or by thread, whose older posts the claim clusters would "
        "otherwise answer as late")] = False,
) -> None:
    """Batch mode: enrich a JSON Lines file with the same models as the worker, no Kafka."""
    from models.enrich import Enricher
    from streams.runtime import event_from
    from streams.score import open_output, score_stream, summary

    settings = _settings(sentiment_model=sentiment_model, rumours_enabled=rumours,
                         cluster_embedder=embedder)
    try:
        event = event_from(settings, event_path)
    except EventConfigError as exc:
        raise fail(str(exc).replace("\n", "; ")) from None
    scorer = _scorer(settings)
    tracker = _tracker(settings, event) if settings.rumours_enabled else None
    officials = None
    if tracker is not None:
        from models.official import OfficialRegistry
        from models.official_tracker import OfficialTracker

        officials = OfficialTracker(OfficialRegistry.from_event(event))
    for target in (out_path, rejects_path, summary_path):
        if target is not None and target.resolve() == input_path.resolve():
            raise fail(f"{target}: would overwrite the input")
    try:
        from streams.jsonl import open_input

        source = open_input(input_path)
        size = input_path.stat().st_size
        enricher = Enricher(event, max_text_chars=settings.max_text_chars)
        with source, open_output(out_path) as out_f:
            rej_f = open_output(rejects_path) if rejects_path else None
            try:
                with _progress() as progress:
                    task = progress.add_task(f"scoring {input_path.name}", total=None)
                    result = score_stream(source, str(input_path), enricher, out_f, rej_f,
                                          progress=lambda n: progress.advance(task, n),
                                          scorer=scorer, tracker=tracker,
                                          officials=officials, sort=sort)
                    progress.update(task, total=progress.tasks[0].completed)
            finally:
                if rej_f is not None:
                    rej_f.close()
        report = summary(result, input_path, event.name if event else None)
        if summary_path is not None:
            with open_output(summary_path) as s_f:
                s_f.write(json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
    except InputError as exc:
        raise fail(str(exc)) from None
    del size
    err.print(
        f"{result.lines_in} lines: {result.lines_out} posts out, {result.rejects} rejected"
        + (f" ({', '.join(f'{k} {v}' for k, v in result.tally.by_reason.most_common())})"
           if result.rejects else "")
        + f", {result.tally.duplicates} duplicate ids",
        highlight=False,
    )
    if result.late_posts:
        err.print(f"{result.late_posts} late post(s): dated more than the cluster TTL "
                  f"({settings.cluster_ttl_s / 3600:g} h) before a post earlier in the file, "
                  "so in no cluster (cluster and rumour_score null); is the file in time "
                  "order? --sort processes it in created_at order", highlight=False)


def _tracker(settings: Settings, event: Any) -> Any:
    from streams.rumours import tracker_from

    try:
        return tracker_from(settings, event)
    except (OSError, ValueError, ImportError) as exc:
        raise fail(f"rumour models: {exc} (CROWDWATCH_CLUSTER_EMBEDDER="
                   f"{settings.cluster_embedder!r}; --no-rumours disables clustering)") from None


def _scorer(settings: Settings) -> Any:
    from streams.runtime import sentiment_scorer_from

    try:
        return sentiment_scorer_from(settings)
    except (OSError, ValueError, ImportError) as exc:
        raise fail(f"sentiment model: {exc} (CROWDWATCH_SENTIMENT_MODEL="
                   f"{settings.sentiment_model!r}; 'off' disables scoring)") from None


# ---------------------------------------------------------------- eval

eval_app = typer.Typer(help="Evaluate models on labelled posts.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    from streams.jsonl import iter_lines, open_input

    rows = []
    with open_input(path) as handle:
        for n, line in enumerate(iter_lines(handle), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise InputError(f"{path}:{n}: not JSON ({what})") from None
            if not isinstance(obj, dict) or "id" not in obj:
                raise InputError(f"{path}:{n}: expected an object with an id ({what})")
            rows.append(obj)
    return rows


def _print_report(report: Any, title: str) -> None:
    table = Table(title=title)
    table.add_column("class")
    for col in ("precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for lab in report.labels:
        table.add_row(lab, f"{report.precision[lab]:.3f}", f"{report.recall[lab]:.3f}",
                      f"{report.f1[lab]:.3f}", str(report.support[lab]))
    out.print(table)
    matrix = Table(title="confusion (rows: gold, columns: predicted)")
    matrix.add_column("gold \\ predicted")
    for lab in report.labels:
        matrix.add_column(lab, justify="right")
    for gold in report.labels:
        matrix.add_row(gold, *[str(report.confusion[gold][p]) for p in report.labels])
    out.print(matrix)
    out.print(f"n = {report.n}   accuracy {report.accuracy:.4f}   "
              f"[bold]macro-recall {report.macro_recall:.4f}   macro-F1 {report.macro_f1:.4f}[/]")


@eval_app.command("sentiment")
def eval_sentiment(
    posts_path: Annotated[Path, typer.Argument(metavar="POSTS.jsonl")],
    labels_path: Annotated[Path, typer.Argument(metavar="LABELS.jsonl")],
    sentiment_model: Annotated[str | None, typer.Option(
        help="'default' or a local model directory (CROWDWATCH_SENTIMENT_MODEL)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report")] = None,
) -> None:
    """Score labelled posts and print macro-recall, macro-F1 and the confusion matrix."""
    from models.evaluation import classification_report
    from models.sentiment import LABELS

    settings = _settings(sentiment_model=sentiment_model)
    try:
        posts = {str(p["id"]): p for p in _read_jsonl(posts_path, "posts")}
        labels = {str(r["id"]): r.get("sentiment") for r in _read_jsonl(labels_path, "labels")}
    except InputError as exc:
        raise fail(str(exc)) from None
    ids = [i for i in labels if i in posts and labels[i] in LABELS]
    if not ids:
        raise fail("no post has a negative/neutral/positive label (field 'sentiment')")
    scorer = _scorer(settings)
    if scorer is None:
        raise fail("sentiment scoring is off (CROWDWATCH_SENTIMENT_MODEL=off)")
    started = time.monotonic()
    predicted = [s.label for s in scorer.score([str(posts[i].get("text", "")) for i in ids])]
    seconds = time.monotonic() - started
    report = classification_report([str(labels[i]) for i in ids], predicted, LABELS)
    _print_report(report, f"sentiment: {posts_path.name} ({len(ids)} labelled posts)")
    skipped = len(labels) - len(ids)
    err.print(f"{len(ids) / seconds:,.0f} posts/s; {skipped} labels without a post or with "
              "another label were skipped", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")


def _labels_beside(posts_path: Path) -> Path:
    name = posts_path.name
    if not name.endswith(".posts.jsonl"):
        raise fail(f"{posts_path}: give --labels (no NAME.posts.jsonl -> NAME.labels.jsonl)")
    return posts_path.with_name(name[: -len(".posts.jsonl")] + ".labels.jsonl")


@eval_app.command("stance")
def eval_stance(
    posts_path: Annotated[Path, typer.Argument(metavar="POSTS.jsonl")],
    labels_path: Annotated[Path | None, typer.Argument(
        metavar="[LABELS.jsonl]", help="Default: NAME.labels.jsonl beside the posts")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report")] = None,
) -> None:
    """Stance (support / deny / query / comment) of labelled posts: per-class F1, macro-F1
    and the confusion matrix. Parents come from ``reply_to`` / ``quote_of`` in the file."""
    from models.stance import STANCES, evaluate_stance, load_default_stance

    labels_path = labels_path or _labels_beside(posts_path)
    try:
        posts = _read_jsonl(posts_path, "posts")
        gold = {str(r["id"]): str(r.get("stance")) for r in _read_jsonl(labels_path, "labels")
                if r.get("stance") in STANCES}
    except InputError as exc:
        raise fail(str(exc)) from None
    if not gold:
        raise fail("no post has a support/deny/query/comment label (field 'stance')")
    started = time.monotonic()
    report = evaluate_stance(posts, gold, load_default_stance())
    seconds = time.monotonic() - started
    _print_report(report, f"stance: {posts_path.name} ({report.n} labelled posts)")
    err.print(f"{report.n / max(seconds, 1e-9):,.0f} posts/s", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")


@eval_app.command("rumours")
def eval_rumours(
    posts_paths: Annotated[list[Path], typer.Argument(
        metavar="POSTS.jsonl...", help="Posts of one event (e.g. its rumours and non-rumours "
        "files); replayed in created_at order")],
    labels_paths: Annotated[list[Path] | None, typer.Option(
        "--labels", help="Labels (field 'rumour': bool); default NAME.labels.jsonl beside "
        "each posts file")] = None,
    embedder: Annotated[str | None, typer.Option(
        help="Claim embeddings: default, hashing, off or a local model directory")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Posts per tracker batch (1: a flag is "
                                       "judged right after each post)")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report")] = None,
) -> None:
    """Rumour flags of the production tracker (clusters + claim prior + rumour score) on
    labelled source posts: precision/recall/F1 of the flag, macro-F1 over both classes
    (judged when each post arrives, and at the end), detection latency."""
    settings = _settings(cluster_embedder=embedder)
    labels_list = labels_paths or [_labels_beside(p) for p in posts_paths]
    try:
        posts = [p for path in posts_paths for p in _read_jsonl(path, "posts")]
        gold = {str(r["id"]): bool(r["rumour"]) for path in labels_list
                for r in _read_jsonl(path, "labels") if isinstance(r.get("rumour"), bool)}
    except InputError as exc:
        raise fail(str(exc)) from None
    if not gold:
        raise fail("no post has a rumour label (field 'rumour': true/false)")
    from models.rumour_tracker import evaluate_tracker

    tracker = _tracker(settings, None)
    started = time.monotonic()
    report = evaluate_tracker(posts, gold, tracker, batch=batch)
    seconds = time.monotonic() - started
    name = ", ".join(p.name for p in posts_paths)
    _print_report(report.online, f"rumour flag when each post arrived: {name}")
    out.print(f"at the end of the stream: macro-F1 {report.at_end.macro_f1:.4f}, rumour F1 "
              f"{report.at_end.f1['rumour']:.4f}")
    lat = report.to_dict()["detection_latency_minutes"]
    if lat["clusters"]:
        out.print(f"detection latency (first post -> flag) over {lat['clusters']} flagged "
                  f"clusters with rumours: median {lat['median']:.1f} min, p90 {lat['p90']:.1f} "
                  "min")
    err.print(f"{report.n_posts} posts in {report.n_clusters} clusters, "
              f"{report.n_posts / max(seconds, 1e-9):,.0f} posts/s", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")


# ---------------------------------------------------------------- rumours


def _cluster_table(clusters: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, expand=True)
    from models.rumour import why

    for col, kw in (("cluster", {}), ("score", {"justify": "right"}), ("why", {}),
                    ("state", {}),
                    ("size", {"justify": "right"}), ("/min", {"justify": "right"}),
                    ("query+deny", {"justify": "right"}), ("first seen", {}),
                    ("claim", {"ratio": 1, "overflow": "fold"}), ("top terms", {})):
        table.add_column(col, **kw)
    for c in clusters:
        stance = c.get("stance") or {}
        score = float(c.get("rumour_score") or 0.0)
        style = "bold red" if c.get("flagged") and c.get("state") != "resolved" else ""
        table.add_row(str(c.get("id")), f"{score:.2f}",
                      why(c.get("drivers"), top=2).replace(", ", "\n"),
                      str(c.get("state")), str(c.get("size")),
                      f"{float(c.get('velocity') or 0):.1f}",
                      str(int(stance.get("query", 0)) + int(stance.get("deny", 0))),
                      str(c.get("first_seen", ""))[11:19], str(c.get("summary", ""))[:140],
                      ", ".join(c.get("top_terms") or [])[:40], style=style)
    return table


@app.command()
def rumours(
    top: Annotated[int, typer.Option("--top", min=1, max=500, help="Clusters to show")] = 20,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes")] = 2.0,
    event_name: Annotated[str | None, typer.Option(
        "--event-name", help="Event name (default: the name in CROWDWATCH_EVENT_FILE)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Current claim clusters from Redis, highest rumour score first (red: flagged)."""
    import asyncio

    from rich.live import Live

    from streams.app import NO_EVENT
    from streams.runtime import event_from, redis_store

    settings = _settings()
    if not settings.redis_configured:
        raise fail("no Redis configured: set CROWDWATCH_REDIS_URL or run `crowdwatch stack up`")
    if event_name is None:
        try:
            event = event_from(settings, None)
        except EventConfigError as exc:
            raise fail(str(exc).replace("\n", "; ")) from None
        event_name = event.name if event else NO_EVENT
    name = event_name

    async def fetch() -> list[dict[str, Any]]:
        store = redis_store(settings)
        try:
            return await store.top_clusters(name, top)
        finally:
            await store.close()

    def load() -> list[dict[str, Any]]:
        try:
            return asyncio.run(fetch())
        except OSError as exc:
            raise fail(f"cannot read Redis: {exc}") from None
        except Exception as exc:  # redis.exceptions.ConnectionError is not an OSError
            raise fail(f"cannot read Redis: {exc}") from None

    title = f"rumour clusters — {name} (top {top})"
    if as_json:
        out.print_json(json.dumps(load(), ensure_ascii=False))
        return
    if not watch:
        clusters = load()
        out.print(_cluster_table(clusters, title))
        if not clusters:
            err.print("no clusters yet (is a worker running for this event?)")
        return
    try:
        with Live(_cluster_table(load(), title), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                live.update(_cluster_table(load(), f"{title} — {time.strftime('%H:%M:%S')}"))
    except KeyboardInterrupt:
        return


# ---------------------------------------------------------------- officials, rebuttals, webcare

official_app = typer.Typer(help="Official accounts of the event (stored in Redis; the event "
                           "YAML's accounts always count).", no_args_is_help=True)
app.add_typer(official_app, name="official")
EventNameOpt = Annotated[str | None, typer.Option(
    "--event-name", help="Event name (default: the name in CROWDWATCH_EVENT_FILE)")]


def _event_and_store(event_name: str | None) -> tuple[str, Any, Any]:
    """(event name, event config or None, a function running a coroutine on a RedisStore)."""
    import asyncio

    from streams.app import NO_EVENT
    from streams.runtime import event_from, redis_store

    settings = _settings()
    if not settings.redis_configured:
        raise fail("no Redis configured: set CROWDWATCH_REDIS_URL or run `crowdwatch stack up`")
    try:
        event = event_from(settings, None)
    except EventConfigError as exc:
        raise fail(str(exc).replace("\n", "; ")) from None
    name = event_name or (event.name if event else NO_EVENT)

    def run(fn: Any) -> Any:
        async def go() -> Any:
            store = redis_store(settings)
            try:
                return await fn(store)
            finally:
                await store.close()
        try:
            return asyncio.run(go())
        except Exception as exc:  # redis connection errors are not OSErrors
            raise fail(f"cannot reach Redis: {exc}") from None

    return name, event, run


@official_app.command("add")
def official_add(
    platform: Annotated[str, typer.Argument(help="bluesky, mastodon, twitter, ...")],
    handle: Annotated[str, typer.Argument(help="@handle, user@instance or profile URL")],
    role: Annotated[str, typer.Argument(help="police, municipality, fire, ambulance, "
                                        "organiser, other")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    event_name: EventNameOpt = None,
) -> None:
    """Add (or update) an official account; running workers pick it up within seconds."""
    from models.official import OfficialRegistry
    from streams.rumours import OFFICIALS

    try:
        registry = OfficialRegistry()
        registry.add(platform, handle, role, name=name)
    except ValueError as exc:
        raise fail(str(exc)) from None
    (doc,) = registry.to_list()
    ev, _event, run = _event_and_store(event_name)
    run(lambda store: store.put_docs(ev, OFFICIALS, {f"{doc['platform']}:{doc['handle']}": doc}))
    out.print(f"official account {doc['platform']}:{doc['handle']} ({doc['role']}) added to {ev}")


@official_app.command("remove")
def official_remove(
    platform: Annotated[str, typer.Argument()],
    handle: Annotated[str, typer.Argument()],
    event_name: EventNameOpt = None,
) -> None:
    """Remove an account added with `official add` (accounts in the event YAML stay)."""
    from models.official import normalize_handle, normalize_platform
    from streams.rumours import OFFICIALS

    key = f"{normalize_platform(platform)}:{normalize_handle(platform, handle)}"
    ev, _event, run = _event_and_store(event_name)
    docs = run(lambda store: store.get_docs(ev, OFFICIALS))
    if key not in docs:
        raise fail(f"{key} is not an added official account of {ev}", code=1)
    run(lambda store: store.del_docs(ev, OFFICIALS, [key]))
    out.print(f"removed {key} from {ev}")


@official_app.command("list")
def official_list(event_name: EventNameOpt = None) -> None:
    """Official accounts: from the event YAML and added with `official add`."""
    from models.official import OfficialRegistry
    from streams.rumours import OFFICIALS

    ev, event, run = _event_and_store(event_name)
    added = run(lambda store: store.get_docs(ev, OFFICIALS))
    table = Table(title=f"official accounts — {ev}")
    for col in ("platform", "handle", "role", "name", "source"):
        table.add_column(col)
    for doc in OfficialRegistry.from_event(event).to_list():
        table.add_row(doc["platform"], doc["handle"], str(doc["role"]), doc.get("name") or "",
                      "event file")
    for doc in added.values():
        table.add_row(doc["platform"], doc["handle"], str(doc["role"]), doc.get("name") or "",
                      "added")
    out.print(table)


@app.command()
def rebut(
    post_id: Annotated[str | None, typer.Argument(metavar="[POST_ID]",
                                                  help="The official post")] = None,
    cluster_id: Annotated[str | None, typer.Argument(metavar="[CLUSTER_ID]",
                                                     help="The rumour cluster it answers")] = None,
    accept: Annotated[bool, typer.Option(
        "--accept", help="Link POST_ID to the clusters suggested for it")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Unlink the pair")] = False,
    event_name: EventNameOpt = None,
) -> None:
    """Link an official post to a rumour cluster (its race is tracked from then on); without
    arguments list the links, the races and the automatic suggestions."""
    from streams.rumours import LINKS, RACES, SUGGESTIONS, link_key

    ev, _event, run = _event_and_store(event_name)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if post_id and accept:
        sugg = [d for d in run(lambda store: store.get_docs(ev, SUGGESTIONS)).values()
                if d.get("official_post") == post_id]
        if not sugg:
            raise fail(f"no suggestion for {post_id} (list them with `crowdwatch rebut`)", 1)
        docs = {link_key(post_id, d["cluster"]): {"official_post": post_id,
                                                  "cluster": d["cluster"],
                                                  "source": "accepted", "at": now}
                for d in sugg}
        run(lambda store: store.put_docs(ev, LINKS, docs))
        out.print(f"linked {post_id} to {', '.join(d['cluster'] for d in sugg)}")
        return
    if post_id and cluster_id:
        key = link_key(post_id, cluster_id)
        if remove:
            run(lambda store: store.del_docs(ev, LINKS, [key]))
            out.print(f"unlinked {post_id} from {cluster_id}")
        else:
            run(lambda store: store.put_docs(ev, LINKS, {key: {
                "official_post": post_id, "cluster": cluster_id, "source": "manual", "at": now}}))
            out.print(f"linked official post {post_id} to rumour cluster {cluster_id}")
        return
    if post_id or cluster_id:
        raise fail("give POST_ID and CLUSTER_ID, or POST_ID --accept, or nothing to list")
    links = run(lambda store: store.get_docs(ev, LINKS))
    races = run(lambda store: store.get_docs(ev, RACES))
    sugg = run(lambda store: store.get_docs(ev, SUGGESTIONS))
    table = Table(title=f"rebuttals — {ev}")
    for col in ("official post", "cluster", "source", "rebuttal reach", "rumour reach", "ratio",
                "time to rebuttal", "state"):
        table.add_column(col)
    for key, link in sorted(links.items()):
        race = races.get(key, {})
        ratio = race.get("reach_ratio")
        ttr = race.get("time_to_rebuttal_s")
        table.add_row(link["official_post"], link["cluster"], link.get("source", ""),
                      str(race.get("rebuttal_reach", "")), str(race.get("rumour_reach", "")),
                      "" if ratio is None else f"{ratio:.2f}",
                      "" if ttr is None else f"{ttr / 60:.1f} min", race.get("state", ""),
                      style="bold red" if race.get("state") == "firing" else "")
    out.print(table)
    pending = [d for k, d in sugg.items() if k not in links]
    if pending:
        st = Table(title="suggested (accept with `crowdwatch rebut POST_ID --accept`)")
        for col in ("official post", "cluster", "confidence"):
            st.add_column(col)
        for d in sorted(pending, key=lambda d: -float(d.get("confidence", 0))):
            st.add_row(d["official_post"], d["cluster"], f"{float(d['confidence']):.2f}")
        out.print(st)


@app.command()
def webcare(
    show_all: Annotated[bool, typer.Option("--all", help="Include answered items")] = False,
    event_name: EventNameOpt = None,
) -> None:
    """Questions and complaints addressed to official accounts, oldest unanswered first."""
    from streams.rumours import WEBCARE

    ev, _event, run = _event_and_store(event_name)
    items = list(run(lambda store: store.get_docs(ev, WEBCARE)).values())
    items = [i for i in items if show_all or not i.get("answered")]
    items.sort(key=lambda i: str(i.get("created_at") or ""))
    table = Table(title=f"webcare queue — {ev}", expand=True)
    for col in ("post", "to", "kind", "asked", "answered"):
        table.add_column(col)
    table.add_column("text", ratio=1, overflow="fold")
    for i in items:
        ans = i.get("response_s")
        table.add_row(str(i.get("id")), str(i.get("to_account")), str(i.get("kind")),
                      str(i.get("created_at") or "")[11:19],
                      "" if not i.get("answered") else
                      f"after {float(ans) / 60:.0f} min" if ans is not None else "yes",
                      str(i.get("text") or "")[:160])
    out.print(table)


# ---------------------------------------------------------------- replay


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="*.posts.jsonl files")],
    speed: Annotated[float | None, typer.Option(
        help="Replay at X times real time (relative timing kept)")] = None,
    max_rate: Annotated[float | None, typer.Option(
        help="Send at a fixed N posts/s instead")] = None,
    max_gap: Annotated[float, typer.Option(
        help="With --speed: longest pause in seconds; longer quiet spells are cut")] = 60.0,
    topic: Annotated[str | None, typer.Option(help="Target topic (default posts.raw)")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
) -> None:
    """Produce posts from files to Kafka in created_at order (as fast as possible unless
    --speed or --max-rate is given)."""
    from streams.kafka_admin import ensure_topics
    from streams.replay import Pacer
    from streams.replay import replay as do_replay

    settings = _settings(kafka_bootstrap=bootstrap)
    if not settings.kafka_configured:
        raise fail("no Kafka configured: set CROWDWATCH_KAFKA_BOOTSTRAP, pass --bootstrap, "
                   "or run `crowdwatch stack up`")
    try:
        Pacer(speed, max_rate, max_gap)
    except ValueError as exc:
        raise fail(str(exc)) from None
    for f in files:
        if not f.is_file():
            raise fail(f"{f}: no such file")
    try:
        ensure_topics(settings, [topic or settings.topic_raw])
    except Exception as exc:
        raise fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    stop = {"flag": False}
    try:
        with _progress() as progress:
            task = progress.add_task("replaying", total=None)
            result = do_replay(
                files, settings, topic=topic, speed=speed, max_rate=max_rate, max_gap=max_gap,
                on_total=lambda n: progress.update(task, total=n),
                on_sent=lambda n: progress.advance(task, n),
                should_stop=lambda: stop["flag"],
            )
    except InputError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    table = Table(title="replay summary", show_header=False)
    for k, v in (
        ("files", ", ".join(Path(f).name for f in result.files)),
        ("lines read", result.lines),
        ("sent to " + (topic or settings.topic_raw), result.sent - result.failed),
        ("refused by Kafka", result.failed),
        ("not a post (will be dead-lettered)", result.unreadable),
        ("without created_at", result.without_time),
        ("posts' time span", f"{result.first_created_at} → {result.last_created_at}"),
        ("wall time", f"{result.seconds:.2f} s"),
        ("rate", f"{result.rate:,.0f} posts/s"),
    ):
        table.add_row(str(k), str(v))
    err.print(table)
    for e in result.errors:
        err.print(f"[red]{e}[/]", highlight=False)
    if result.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------- worker


@app.command()
def worker(
    event_path: Annotated[Path | None, typer.Option("--event", help="Event YAML")] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of /metrics and /health")] = None,
    web_host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    app_id: Annotated[str | None, typer.Option(help="Consumer group / app id")] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the stream processor (a Faust worker) against the configured Kafka."""
    from prometheus_client import CollectorRegistry

    from streams.app import Pipeline, Worker
    from streams.kafka_admin import ensure_topics
    from streams.runtime import (
        event_from,
        limit_malloc_arenas,
        sentiment_scorer_from,
        shift_config_from,
        store_from,
        with_shared_pseudonym_key,
    )

    settings = _settings(web_port=web_port, web_host=web_host, app_id=app_id)
    if not settings.kafka_configured:
        raise fail("no Kafka configured: set CROWDWATCH_KAFKA_BOOTSTRAP or run "
                   "`crowdwatch stack up` (or try `crowdwatch demo`)")
    if settings.worker_role == "rumours" and not settings.rumours_enabled:
        raise fail("CROWDWATCH_WORKER_ROLE=rumours runs only the rumour stage, but "
                   "CROWDWATCH_RUMOURS_ENABLED is false")
    limit_malloc_arenas(settings.malloc_arena_max)  # before the worker's threads start
    try:
        event = event_from(settings, event_path)
    except EventConfigError as exc:
        raise fail(str(exc).replace("\n", "; ")) from None
    try:
        ensure_topics(settings)
    except Exception as exc:
        raise fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    try:
        settings = with_shared_pseudonym_key(settings)
    except Exception as exc:
        raise fail(f"cannot reach Redis for the pseudonym key: {exc} (or set "
                   "CROWDWATCH_PSEUDONYM_KEY)") from None
    child = None
    from streams.rumour_process import PARENT_ENV, RumourProcess, watch_parent

    parent = os.environ.get(PARENT_ENV, "")
    if settings.worker_role == "rumours" and parent.isdigit():
        watch_parent(int(parent))  # a worker's rumour process: it ends with its worker
    if settings.rumour_process and settings.rumours_enabled and settings.worker_role == "all":
        # this process: the ingest side; the rumour stage: a child (streams.rumour_process)
        settings = settings.model_copy(update={"worker_role": "ingest"})
        child = RumourProcess(settings, loglevel=loglevel, event_path=event_path)
    scorer = None
    if settings.worker_role != "rumours":
        try:
            scorer = sentiment_scorer_from(settings)
        except (OSError, ValueError, ImportError) as exc:
            raise fail(f"sentiment model: {exc} (CROWDWATCH_SENTIMENT_MODEL="
                       f"{settings.sentiment_model!r}; 'off' disables scoring)") from None
    tracker = None
    if settings.rumours_enabled and settings.worker_role != "ingest":
        from streams.rumours import tracker_from

        try:
            tracker = tracker_from(settings, event)
        except (OSError, ValueError, ImportError) as exc:
            raise fail(f"rumour stage: {exc} (CROWDWATCH_CLUSTER_EMBEDDER="
                       f"{settings.cluster_embedder!r}; CROWDWATCH_RUMOURS_ENABLED=false "
                       "disables it)") from None
    pipeline = Pipeline(settings, store=store_from(settings), registry=CollectorRegistry(),
                        event=event, scorer=scorer, shift=shift_config_from(settings),
                        tracker=tracker)
    role = "" if settings.worker_role == "all" else f" ({settings.worker_role})"
    err.print(f"worker {settings.app_id}{role}: /metrics and /health on "
              f"http://{settings.web_host}:{settings.web_port}", highlight=False)
    if child is not None:
        err.print(f"rumour process {settings.rumour_app_id}: /metrics and /health on "
                  f"http://{settings.web_host}:{settings.rumour_port}", highlight=False)
        child.start()
        pipeline.watch_child(child)
    try:
        Worker(pipeline.app, loglevel=loglevel.upper(), quiet=True).execute_from_commandline()
    finally:
        if child is not None:
            child.stop()


# ---------------------------------------------------------------- demo


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="Stop after S seconds")] = None,
    speed: Annotated[float, typer.Option(
        help="Replay speed (x real time) of the one-hour sample")] = 60.0,
    web_port: Annotated[int | None, typer.Option(help="Port of /metrics and /health")] = None,
    plain: Annotated[bool, typer.Option(
        help="Print a line per second instead of the live view")] = False,
) -> None:
    """Replay a bundled synthetic King's Day sample through a worker and show it live.

    Without configured services it starts an embedded broker and keeps state in memory."""
    from streams.demo import run_demo

    settings = _settings(web_port=web_port)
    try:
        code = run_demo(settings, duration=duration, speed=speed, plain=plain, console=err)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


# ---------------------------------------------------------------- stack


_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _stack_command(cmd: str, doc: str) -> None:
    def run(ctx: typer.Context) -> None:
        from streams import stack

        raise typer.Exit(stack.main([cmd, *ctx.args]))

    run.__doc__ = doc
    stack_app.command(cmd, context_settings=_PASS)(run)


for _cmd, _doc in (
    ("up", "Fetch Kafka 4.x jars (once), start Kafka (KRaft), Redis, Prometheus and Alertmanager "
           "on 127.0.0.1 and write their addresses to ~/.crowdwatch/stack.env. Idempotent. "
           "Options: `crowdwatch stack up --help`."),
    ("down", "Stop the local services (--purge also deletes their data)."),
    ("status", "Show the local services (--env prints the settings lines, --json for scripts)."),
    ("restart", "Restart one service (kafka, redis, prometheus, alertmanager) with its data."),
    ("kill", "Send a signal to one service (fault injection), e.g. `kill kafka --signal KILL`."),
):
    _stack_command(_cmd, _doc)


# ---------------------------------------------------------------- generate


@app.command()
def generate(
    scenario: Annotated[str, typer.Option(help="Scenario name (see --list)")] = "rumour-rebuttal",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same traffic")] = 1,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output directory")] = None,
    posts: Annotated[int, typer.Option("--posts", help="Number of posts")] = 5000,
    minutes: Annotated[float, typer.Option(help="Time span of the traffic")] = 120.0,
    event_path: Annotated[Path | None, typer.Option("--event", help="Event YAML")] = None,
    list_scenarios: Annotated[bool, typer.Option("--list", help="List scenarios")] = False,
) -> None:
    """Write synthetic Dutch + English event traffic (posts.jsonl) and its exact truth
    (truth.json): for demos, tests and benchmarks. Every post is marked synthetic."""
    from models.generate import SCENARIOS, iter_generate, write_traffic

    if list_scenarios:
        for name, text in SCENARIOS.items():
            out.print(f"[bold]{name}[/]: {text}")
        return
    if out_dir is None:
        raise fail("--out DIR is required")
    if scenario not in SCENARIOS:
        raise fail(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    from models.event import load_event

    try:
        event = load_event(event_path) if event_path else None
        out_dir.mkdir(parents=True, exist_ok=True)
        stream = iter_generate(scenario, seed=seed, n_posts=posts, event=event,
                               duration_minutes=minutes)
        posts_path, truth_path = write_traffic(stream, out_dir)
    except EventConfigError as exc:
        raise fail(str(exc).replace("\n", "; ")) from None
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    err.print(f"wrote {posts:,} posts to {posts_path} and the truth to {truth_path}",
              highlight=False)


# ---------------------------------------------------------------- ingest (live connectors)


ingest_app = typer.Typer(help="Live connectors: Bluesky Jetstream, Mastodon streaming -> "
                         "posts.raw (or a JSON Lines file).", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")

_OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Write canonical posts to this JSON Lines file instead of Kafka "
    "(rejects to FILE.rejects.jsonl); replay it later with `crowdwatch replay`")]
_DurationOpt = Annotated[float | None, typer.Option(help="Stop cleanly after S seconds")]
_MetricsOpt = Annotated[int | None, typer.Option(
    "--metrics-port", help="Serve Prometheus /metrics on 127.0.0.1:PORT (e.g. 6070); off "
    "when not given")]
_KeywordOpt = Annotated[list[str] | None, typer.Option(
    "--keyword", "-k", help="Keyword or #hashtag to keep (repeatable; case/accent-insensitive)")]
_LangOpt = Annotated[list[str] | None, typer.Option(
    "--lang", help="Language to keep (repeatable, ISO 639-1); posts without one are kept")]
_AccountOpt = Annotated[list[str] | None, typer.Option(
    "--account", help="Account whose posts (and interactions with them) are always kept "
    "(repeatable; Bluesky did or handle, Mastodon user@host)")]
_EventOpt = Annotated[Path | None, typer.Option(
    "--event", help="Event YAML: keep its topic terms, languages and official accounts")]
_DeletesOpt = Annotated[bool, typer.Option(
    "--deletes", help="Produce a tombstone record (kind=delete) when a post this connector "
    "produced is deleted; without it deletes are counted as filtered")]
_CursorFileOpt = Annotated[Path | None, typer.Option(
    "--cursor-file", help="Cursor file (default ~/.crowdwatch/ingest/NAME.cursor.json)")]
_NameOpt = Annotated[str | None, typer.Option(
    "--name", help="Connector name: names the cursor file (default: the source)")]
_NoCursorOpt = Annotated[bool, typer.Option(
    "--no-cursor", help="Neither resume from nor write a cursor file")]
_TopicOpt = Annotated[str | None, typer.Option(help="Target topic (default posts.raw)")]
_BootstrapOpt = Annotated[str | None, typer.Option(help="Kafka bootstrap servers")]
_LogOpt = Annotated[str, typer.Option(help="debug, info, warning, error")]


def _ingest_run(source: str, build: Any, *, out_path: Path | None, topic: str | None,
                bootstrap: str | None, event_path: Path | None, keyword: list[str] | None,
                lang: list[str] | None, account: list[str] | None, emit_deletes: bool,
                cursor_file: Path | None, name: str | None, no_cursor: bool,
                duration: float | None, metrics_port: int | None, loglevel: str,
                endpoint: str, protocol: str = "") -> None:
    """What both ingest commands share: settings, sink, filter, pipeline, run, summary."""
    from prometheus_client import CollectorRegistry

    from models.event import load_event
    from streams.ingest.common import (
        CursorStore,
        IngestError,
        IngestMetrics,
        IngestSettings,
        build_filter,
        make_pipeline,
        make_sink,
        run_connector,
    )

    logging.getLogger().setLevel(loglevel.upper())
    settings = _settings(kafka_bootstrap=bootstrap)
    try:
        ingest = IngestSettings()
    except Exception as exc:  # pydantic ValidationError: bad CROWDWATCH_INGEST_* value
        raise fail(f"invalid settings: {exc}") from None
    if duration is not None and duration <= 0:
        raise fail("--duration must be > 0")
    if out_path is None and not settings.kafka_configured:
        raise fail("no Kafka configured: set CROWDWATCH_KAFKA_BOOTSTRAP, pass --bootstrap, "
                   "run `crowdwatch stack up`, or write to a file with --out FILE")
    try:
        event = load_event(event_path) if event_path else None
    except EventConfigError as exc:
        raise fail(str(exc).replace("\n", "; ")) from None
    target = topic or settings.topic_raw
    if out_path is None:
        from streams.kafka_admin import ensure_topics

        try:
            ensure_topics(settings, [target, settings.topic_deadletter])
        except Exception as exc:
            raise fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry, source)
    sink = make_sink(out_path, settings, ingest, topic=target, source=source, metrics=metrics)
    content_filter = build_filter(keyword or [], lang or [], account or [], event, source)
    cursor_path = None if no_cursor else (
        cursor_file or CursorStore.default_path(ingest, name or source))
    pipeline = make_pipeline(source, endpoint, sink, metrics, content_filter, ingest,
                             cursor_path=cursor_path, protocol=protocol,
                             emit_deletes=emit_deletes)
    try:
        connector = build(pipeline, ingest)
    except IngestError as exc:
        raise fail(str(exc)) from None
    where = str(out_path) if out_path else f"Kafka topic {target} at {settings.kafka_bootstrap}"
    err.print(f"ingesting {source} from {endpoint} into {where}"
              + (f"; /metrics on http://{ingest.metrics_host}:{metrics_port}"
                 if metrics_port else "")
              + (f"; cursor {cursor_path}" if cursor_path else "")
              + "; Ctrl-C stops", highlight=False, soft_wrap=True)
    try:
        result = run_connector(
            connector, duration=duration,
            metrics=(registry, ingest.metrics_host, metrics_port) if metrics_port else None)
    except OSError as exc:
        raise fail(str(exc)) from None
    counts = result.counts
    filtered = ", ".join(f"{k} {v}" for k, v in counts.filtered.most_common())
    err.print(
        f"{source}: {counts.total_received} received, {counts.produced} produced, "
        f"{sum(counts.filtered.values())} filtered" + (f" ({filtered})" if filtered else "")
        + f", {counts.malformed} malformed, {counts.reconnects} reconnects "
        f"in {result.seconds:.1f} s", highlight=False, soft_wrap=True)
    if result.error:
        raise fail(result.error, 1)


@ingest_app.command("bluesky")
def ingest_bluesky(
    endpoint: Annotated[str | None, typer.Option(
        help="Jetstream base URL (default wss://jetstream2.us-east.bsky.network)")] = None,
    protocol: Annotated[str, typer.Option(
        help="v1: /subscribe (time_us cursor); v2: subscribeEvents (xrpc.v1.json, seq cursor)"
    )] = "v1",
    collection: Annotated[list[str] | None, typer.Option(
        help="Collections to subscribe to (default app.bsky.feed.post, .repost, .like)")] = None,
    keyword: _KeywordOpt = None,
    lang: _LangOpt = None,
    account: _AccountOpt = None,
    only_accounts: Annotated[bool, typer.Option(
        "--only-accounts", help="Ask Jetstream for the watched accounts' repos only")] = False,
    event_path: _EventOpt = None,
    deletes: _DeletesOpt = False,
    out_path: _OutOpt = None,
    duration: _DurationOpt = None,
    metrics_port: _MetricsOpt = None,
    cursor_file: _CursorFileOpt = None,
    name: _NameOpt = None,
    no_cursor: _NoCursorOpt = False,
    cursor: Annotated[int | None, typer.Option(
        help="Start at this unix time in MICROseconds (overrides the cursor file)")] = None,
    compress: Annotated[bool, typer.Option(
        help="Ask for zstd-compressed frames (needs --zstd-dictionary)")] = False,
    zstd_dictionary: Annotated[Path | None, typer.Option(
        help="Jetstream's zstd dictionary file")] = None,
    appview: Annotated[str | None, typer.Option(
        help="Where handles of watched accounts are resolved to dids "
        "(default https://public.api.bsky.app)")] = None,
    no_resolve: Annotated[bool, typer.Option(
        "--no-resolve", help="Do not resolve handles (they match once an identity event for "
        "them was seen)")] = False,
    topic: _TopicOpt = None,
    bootstrap: _BootstrapOpt = None,
    loglevel: _LogOpt = "warning",
) -> None:
    """Bluesky Jetstream over a websocket into posts.raw: posts, replies, quotes, reposts and
    likes as canonical records; resumes from its cursor file after a restart."""
    from models.firehose import BLUESKY_COLLECTIONS
    from streams.ingest.bluesky import JetstreamConnector, JetstreamOptions
    from streams.ingest.common import IngestSettings

    if protocol not in ("v1", "v2"):
        raise fail(f"--protocol {protocol!r}: choose v1 or v2")
    if cursor is not None and cursor < 10**15:
        raise fail("--cursor is unix time in microseconds (16 digits), e.g. 1735689600000000")
    if compress and zstd_dictionary is None:
        raise fail("--compress needs --zstd-dictionary PATH: Jetstream compresses with a custom "
                   "zstd dictionary, and without it the frames cannot be read")
    dictionary = None
    if zstd_dictionary is not None:
        try:
            dictionary = zstd_dictionary.read_bytes()
        except OSError as exc:
            raise fail(f"{zstd_dictionary}: {exc.strerror or exc}") from None
    try:
        defaults = IngestSettings()
    except Exception as exc:
        raise fail(f"invalid settings: {exc}") from None
    options = JetstreamOptions(
        endpoint=endpoint or defaults.bluesky_endpoint, protocol=protocol,
        collections=tuple(collection or BLUESKY_COLLECTIONS), only_accounts=only_accounts,
        compress=compress, dictionary=dictionary, start_cursor=cursor,
        resolve_handles=not no_resolve, appview=appview or defaults.bluesky_appview)
    _ingest_run(
        "bluesky", lambda pipeline, ingest: JetstreamConnector(pipeline, ingest, options),
        out_path=out_path, topic=topic, bootstrap=bootstrap, event_path=event_path,
        keyword=keyword, lang=lang, account=account, emit_deletes=deletes,
        cursor_file=cursor_file, name=name, no_cursor=no_cursor, duration=duration,
        metrics_port=metrics_port, loglevel=loglevel, endpoint=options.endpoint,
        protocol=protocol)


@ingest_app.command("mastodon")
def ingest_mastodon(
    instance: Annotated[str, typer.Option(help="Instance base URL, e.g. https://mastodon.example")],
    token: Annotated[str | None, typer.Option(
        help="User access token (read:statuses); default CROWDWATCH_INGEST_MASTODON_TOKEN")] = None,
    stream: Annotated[str, typer.Option(
        help="public, public:local, public:remote, hashtag, hashtag:local")] = "public",
    tag: Annotated[list[str] | None, typer.Option(
        help="Hashtag for --stream hashtag (repeatable: one connection each)")] = None,
    endpoint: Annotated[str | None, typer.Option(
        help="Streaming base URL when it is not the instance's")] = None,
    keyword: _KeywordOpt = None,
    lang: _LangOpt = None,
    account: _AccountOpt = None,
    event_path: _EventOpt = None,
    deletes: _DeletesOpt = False,
    out_path: _OutOpt = None,
    duration: _DurationOpt = None,
    metrics_port: _MetricsOpt = None,
    cursor_file: _CursorFileOpt = None,
    name: _NameOpt = None,
    no_cursor: _NoCursorOpt = False,
    topic: _TopicOpt = None,
    bootstrap: _BootstrapOpt = None,
    loglevel: _LogOpt = "warning",
) -> None:
    """A Mastodon instance's streaming API (server-sent events) into posts.raw: statuses,
    replies, quotes and reblogs as canonical records; deletes counted."""
    from streams.ingest.common import IngestSettings
    from streams.ingest.mastodon import MastodonConnector, MastodonOptions

    try:
        defaults = IngestSettings()
    except Exception as exc:
        raise fail(f"invalid settings: {exc}") from None
    options = MastodonOptions(
        instance=instance, token=token or defaults.mastodon_token.get_secret_value(),
        stream=stream, tags=tuple(tag or ()), endpoint=endpoint)
    _ingest_run(
        "mastodon", lambda pipeline, ingest: MastodonConnector(pipeline, ingest, options),
        out_path=out_path, topic=topic, bootstrap=bootstrap, event_path=event_path,
        keyword=keyword, lang=lang, account=account, emit_deletes=deletes,
        cursor_file=cursor_file, name=name, no_cursor=no_cursor, duration=duration,
        metrics_port=metrics_port, loglevel=loglevel, endpoint=endpoint or instance,
        protocol=stream)


# ---- alerts (issue 6): self-contained


alerts_app = typer.Typer(help="Alert delivery through Alertmanager.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def alerts_test(
    url: Annotated[str | None, typer.Option(
        help="Alertmanager URL (default CROWDWATCH_ALERTMANAGER_URL)")] = None,
    event: Annotated[str, typer.Option(help="event label of the test alert")] = "test",
    resolve_after: Annotated[float, typer.Option(
        help="Seconds until the test alert resolves by itself")] = 300.0,
) -> None:
    """Push a clearly marked TEST alert through the configured Alertmanager."""
    from streams.alertmanager import Alert, AlertmanagerError, push_once

    target = url or _settings().alertmanager_url
    if not target:
        raise fail("no Alertmanager configured: set CROWDWATCH_ALERTMANAGER_URL, pass --url, "
                   "or run `crowdwatch stack up`")
    now = time.time()
    alert = Alert(
        labels={"alertname": "CrowdwatchTestAlert", "test": "true", "event": event,
                "area": "test", "severity": "info", "team": "oncall", "source": "cli"},
        annotations={
            "summary": "TEST -- crowdwatch test alert, no action needed",
            "description": "NL: Dit is een TESTmelding van `crowdwatch alerts test`; er is "
                           "niets aan de hand.\nEN: This is a TEST alert from `crowdwatch "
                           "alerts test`; nothing is wrong.",
            "samples": "- (test) voorbeeldbericht / example post",
            "runbook_url": "docs/operations.md#crowdwatchtestalert",
        },
        starts_at=now, ends_at=now + resolve_after)
    try:
        status = push_once(target, [alert])
    except AlertmanagerError as exc:
        raise fail(str(exc), 1) from None
    version = (status.get("versionInfo") or {}).get("version", "?")
    out.print(f"pushed test alert CrowdwatchTestAlert (labels test=true, event={event}) to "
                  f"{target} (Alertmanager {version}); it routes to the default receiver and "
                  f"resolves in {resolve_after:.0f}s")


# ---- dashboards (issue 7): self-contained


dashboards_app = typer.Typer(help="Grafana dashboards.", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")
DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str | None, typer.Option(
        help="Grafana base URL, e.g. https://grafana.example:3000 (default "
        "CROWDWATCH_GRAFANA_URL)")] = None,
    token: Annotated[str | None, typer.Option(
        help="Service-account token, role Editor (default CROWDWATCH_GRAFANA_TOKEN; prefer "
        "the variable: options show in the process list)")] = None,
    folder: Annotated[str | None, typer.Option(
        help="Folder title (created when missing); default: the root (General) folder")] = None,
    directory: Annotated[Path, typer.Option(
        "--dir", help="Dashboards to upload (*.json)")] = DASHBOARDS_DIR,
    timeout: Annotated[float, typer.Option(min=0.5, help="Seconds per request")] = 10.0,
) -> None:
    """Upload every dashboard JSON to an existing Grafana (create or overwrite by uid).

    Exit codes: 0 all pushed; 1 Grafana rejected a dashboard (e.g. 412); 2 bad arguments,
    no token or no dashboards; 3 Grafana unreachable; 4 token refused (401/403)."""
    from streams.grafana import GrafanaError, load_dashboards, push_dashboards, redact

    settings = _settings()
    target = url or settings.grafana_url
    secret = token or settings.grafana_token.get_secret_value()
    if not target:
        raise fail("no Grafana URL: pass --url or set CROWDWATCH_GRAFANA_URL")
    if not secret:
        raise fail("no Grafana token: set CROWDWATCH_GRAFANA_TOKEN (or pass --token); create "
                   "a service account with role Editor in Grafana")
    try:
        dashboards = load_dashboards(directory)
        report = push_dashboards(target, secret, dashboards, folder=folder, timeout_s=timeout)
    except GrafanaError as exc:
        raise fail(str(exc), exc.exit_code) from None
    where = f"folder {folder!r}" if folder else "the General folder"
    for r in report.results:
        if r.ok:
            out.print(f"[green]pushed[/] {r.path.name}: {r.title} (uid {r.uid}, version "
                      f"{r.version}) {r.url}", highlight=False, soft_wrap=True)
        else:
            err.print(f"[bold red]rejected[/] {r.error}", highlight=False, soft_wrap=True)
    pushed = len(report.results) - len(report.failed)
    out.print(f"{pushed} of {len(report.results)} dashboard(s) pushed to {where} at "
              f"{redact(target).rstrip('/')} (Grafana {report.grafana_version})", highlight=False)
    if report.failed:
        raise typer.Exit(1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    try:
        app()
    finally:
        logging.getLogger(__name__).debug("done in %.2fs", time.monotonic() - start)


if __name__ == "__main__":
    main()
