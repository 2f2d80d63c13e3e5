"""The Faust application: topics, agents, executor, state, metrics and web pages.

:class:`Pipeline` wires the I/O around the pure ``models`` code. It is used by
``crowdwatch worker`` (Faust's own Worker runs it), by ``crowdwatch demo``
(started in-process) and by the integration tests.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agents import alerts as alerts_agent
from agents import annotations as annotations_agent
from agents import enrich as enrich_agent
from agents import rumours as rumours_agent
from agents import sentiment as sentiment_agent
from models.enrich import PostSummary, RawRecord
from models.event import EventConfig
from models.jsonio import dumps
from models.mood import MoodShiftDetector, MoodSignal, ShiftConfig, signal_dict
from models.official import OfficialRegistry
from models.official_tracker import OfficialTracker
from models.rumour import DRIVERS, why
from models.rumour_tracker import RumourTracker
from models.sentiment import CachedScorer, SentimentScorer
from streams.batch import (
    BatchProcessor,
    Output,
    PreparedBatch,
    ScoredBatch,
    author_pseudonymiser,
    init_child,
    run_in_child,
    score_values,
)
from streams.metrics import (
    MoodMetrics,
    OfficialMetrics,
    PipelineMetrics,
    RumourMetrics,
    SafetyMetrics,
)
from streams.rebuild import CHECK_EVERY_S, RebuildMetrics, StateGuard
from streams.rumour_process import RumourProcess
from streams.rumours import RumourStage
from streams.runtime import trim_malloc
from streams.settings import Settings
from streams.state import RetryingStore, StateStore
from streams.watchdog import (
    PartitionSample,
    PartitionStatus,
    StallWatchdog,
    WorkerStalledError,
    health_body,
)

log = logging.getLogger(__name__)

NO_EVENT = "default"


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{s.strip()}" for s in bootstrap.split(",") if s.strip()]


def _credentials(settings: Settings) -> Any:
    """Faust credentials for SASL (PLAIN/SCRAM, over TLS with SASL_SSL) or TLS alone."""
    tls = settings.kafka_ssl_context()
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=tls,
        )
    if tls is not None:
        return faust.SSLCredentials(tls)
    return None


class Worker(faust.Worker):
    """``faust.Worker`` without its terminal spinner. At WARNING or above (``crowdwatch
    worker --loglevel warning``, as the benchmarks run it) faust sets the root logger to
    DEBUG and hangs a spinner handler on it, and the root stays at DEBUG after start-up:
    every library's ``log.debug`` then builds a log record that the handlers drop (aiokafka
    logs one per record sent). Measured with py-spy in a soak: ~7 % of the event loop's
    thread."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


class RumourProcessError(RuntimeError):
    """The worker's rumour process ended (``streams.rumour_process``)."""


class Pipeline:
    """Everything one worker process runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: StateStore,
        registry: CollectorRegistry,
        event: EventConfig | None = None,
        scorer: SentimentScorer | None = None,
        shift: ShiftConfig | None = None,
        tracker: RumourTracker | None = None,
        web_enabled: bool = True,
    ) -> None:
        """``tracker``: the rumour stage's tracker (``streams.rumours.tracker_from``); None
        runs no rumour stage."""
        if not settings.kafka_configured:
            raise ValueError("CROWDWATCH_KAFKA_BOOTSTRAP is not set")
        self.settings = settings
        self.event = event
        self.event_name = event.name if event else NO_EVENT
        self.registry = registry
        self.rebuild_metrics = RebuildMetrics(registry, self.event_name)
        #: the store as given (health checks, /api/* reads: fail fast) ...
        self.raw_store = store
        #: ... and as the agents use it: waits for an unreachable Redis instead of crashing
        self.store: StateStore = RetryingStore(
            store, on_error=lambda _exc: self.rebuild_metrics.store_errors.labels(
                self.event_name).inc(),
            stopping=self._stopping)
        #: what this process runs (``worker_role``): "all", "ingest" (no rumour stage here:
        #: a rumour process reads posts.claims) or "rumours" (the rumour stage only)
        self.role = settings.worker_role
        if self.role == "rumours" and tracker is None:
            raise ValueError("worker_role 'rumours' needs the rumour stage's tracker")
        if self.role == "ingest":  # the rumour stage runs in the other process
            tracker = None
        ingest = self.role != "rumours"
        # the rumour process reads no posts.raw: it exports no zero post-count series of its
        # own next to the ingest side's (its lag, stall and store series are its own)
        self.metrics = PipelineMetrics(
            registry, self.event_name,
            areas=[a.name for a in event.areas] if event else (),
            topics=[t.name for t in event.topics] if event else (),
            warm=ingest,
        )
        self.safety_metrics = SafetyMetrics(
            registry, self.event_name, areas=[a.name for a in event.areas] if event else (),
            warm=ingest)
        #: posts.claims is written here: for this process's rumour stage or a rumour process
        self.feeds_claims = ingest and (tracker is not None or (
            self.role == "ingest" and settings.rumours_enabled))
        # without sentiment the rumour stage's input comes straight from enrichment
        claims_from_enrich = settings.topic_claims if self.feeds_claims and scorer is None \
            else None
        pseudonymiser = author_pseudonymiser(settings)  # None: raw authors (setting off)
        self.processor = BatchProcessor(event, max_text_chars=settings.max_text_chars,
                                        topic_enriched=settings.topic_enriched,
                                        topic_deadletter=settings.topic_deadletter,
                                        topic_claims=claims_from_enrich,
                                        pseudonymiser=pseudonymiser)
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="crowdwatch-cpu")
        self.pool: ProcessPoolExecutor | None = None
        if settings.cpu_processes > 0:
            self.pool = ProcessPoolExecutor(
                max_workers=settings.cpu_processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_child,
                initargs=(event.model_dump_json() if event else None, settings.max_text_chars,
                          settings.topic_enriched, settings.topic_deadletter,
                          claims_from_enrich,
                          pseudonymiser.key if pseudonymiser is not None else None),
            )
        self.started_at = time.time()
        self.last_batch_at: float | None = None
        self.child: RumourProcess | None = None  # watch_child
        self.processed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset
        datadir = Path(settings.data_dir) / settings.app_id
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.app_id,
            broker=broker_urls(settings.kafka_bootstrap),
            broker_credentials=_credentials(settings),
            broker_session_timeout=settings.broker_session_timeout,
            broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
            store="memory://",
            datadir=str(datadir),
            topic_partitions=settings.topic_partitions,
            topic_disable_leader=True,
            web_enabled=web_enabled,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_in_thread=False,
            stream_buffer_maxsize=max(4096, settings.batch_size * (settings.agent_concurrency + 2)),
            broker_max_poll_records=settings.batch_size,
            producer_linger=0.005,
            producer_max_batch_size=512 * 1024,
            producer_max_request_size=8 * 1024 * 1024,
            autodiscover=False,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.raw_topic = self.app.topic(settings.topic_raw, key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
        self.enriched_topic = self.app.topic(settings.topic_enriched, key_type=bytes,
                                             value_type=bytes, key_serializer="raw",
                                             value_serializer="raw")
        if ingest:
            enrich_agent.register(self)
        self.scorer = scorer if ingest else None
        self.mood_metrics = MoodMetrics(registry, self.event_name)
        self.detector = MoodShiftDetector(shift)
        # the minute the last batch was checked at, and when (monotonic): the mood timer
        # goes on from there once no batch came for ``quiet_after_s`` (the last batch's,
        # not the newest minute ever seen: one post dated 9999 would otherwise hold the
        # timer's checks there and end every shift of a busy stream)
        self._mood_mark: int | None = None
        self._mood_marked_at = 0.0
        # one thread: torch parallelises inside a batch (CROWDWATCH_SENTIMENT_THREADS)
        self.score_executor = ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="crowdwatch-sentiment")
        self.claims_topic = self.app.topic(settings.topic_claims, key_type=bytes,
                                           value_type=bytes, key_serializer="raw",
                                           value_serializer="raw",
                                           partitions=settings.claim_partitions)
        self.alerts = alerts_agent.register(self)  # None without CROWDWATCH_ALERTMANAGER_URL
        self.rumours: RumourStage | None = None
        if tracker is not None:
            base = OfficialRegistry.from_event(event)
            self.rumours = RumourStage(
                tracker, event=self.event_name, store=self.store,
                metrics=RumourMetrics(registry, self.event_name, top_k=settings.rumour_top_k),
                topic_events=settings.topic_cluster_events,
                state_ttl_s=settings.rumour_state_ttl_s,
                officials=OfficialTracker(base, auto_link=settings.rebuttal_auto_link),
                official_metrics=OfficialMetrics(registry, self.event_name,
                                                 top_k=settings.rumour_top_k),
                topic_signals=settings.topic_signals, base_registry=base,
                quiet_after_s=settings.quiet_after_s)
            self.rumours.alerts = self.alerts
            self.rumours.annotations = annotations_agent.register(self)
            rumours_agent.register(self)
        if self.scorer is not None:
            sentiment_agent.register(self)
        self._register_web()
        self._register_api()
        self._register_timers()
        self.state_guard = StateGuard(settings, self.store, self.event_name, self.rebuild_metrics)
        if ingest:  # the counts belong to the ingest side; the clusters rebuild themselves
            self._register_state_guard()

    # ---- state, outputs, metrics (called by agents) ----

    async def record_state(self, posts: Sequence[PostSummary]) -> list[bool]:
        """Count posts not seen before in the store; on store failure count them as new in
        metrics (the store catches up on re-delivery) and log."""
        try:
            return await self.store.record_batch(self.event_name, posts)
        except Exception:
            self.metrics.store_errors.inc()
            log.exception("state store write failed for a batch of %d posts", len(posts))
            raise

    async def process(self, records: Sequence[RawRecord]) -> PreparedBatch:
        """Run the CPU part of a batch off the event loop (process pool or thread)."""
        loop = asyncio.get_running_loop()
        if self.pool is not None:
            return await loop.run_in_executor(self.pool, run_in_child, list(records))
        return await loop.run_in_executor(self.executor, self.processor, records)

    async def score(self, values: Sequence[bytes | None]) -> ScoredBatch:
        """Score enriched posts off the event loop."""
        if self.scorer is None:  # pragma: no cover - the agent is only registered with one
            raise RuntimeError("no sentiment scorer configured")
        loop = asyncio.get_running_loop()
        cache = self.scorer if isinstance(self.scorer, CachedScorer) else None
        hits_before = cache.hits if cache else 0
        claims = self.settings.topic_claims if self.feeds_claims else None
        batch = await loop.run_in_executor(self.score_executor, score_values, list(values),
                                           self.scorer, self.settings.topic_scored, claims)
        self.mood_metrics.scored.inc(len(batch.rows))
        if cache is not None:
            self.mood_metrics.cache_hits.inc(cache.hits - hits_before)
        return batch

    def observe_mood(self, batch: ScoredBatch, fresh: Sequence[bool]) -> list[Output]:
        """Mood metrics and the shift detector for posts not seen before; returns the signal
        records to send (``signals`` topic, keyed by scope/name)."""
        self.mood_metrics.observe(batch.rows, fresh)
        new_rows = [row for row, is_new in zip(batch.rows, fresh, strict=True) if is_new]
        if not new_rows:
            return []
        self.detector.observe_rows(new_rows)
        minute = max(r.minute for r in new_rows)
        self._mood_mark, self._mood_marked_at = minute, time.monotonic()
        return self._mood_outputs(self.detector.check(minute))

    def mood_tick(self, now: float | None = None) -> list[Output]:
        """Timer: once no batch of new posts came for ``quiet_after_s`` (``now``:
        ``time.monotonic()``), check the detector at the last batch's minute plus the quiet
        time, so the shift of an area nobody posts about ends also in a stream with no
        posts at all (checks otherwise run per batch)."""
        if self._mood_mark is None:
            return []
        idle = (time.monotonic() if now is None else now) - self._mood_marked_at
        if idle < self.settings.quiet_after_s:
            return []
        return self._mood_outputs(self.detector.check(self._mood_mark + int(idle // 60)))

    def _mood_outputs(self, signals: Sequence[MoodSignal]) -> list[Output]:
        """Gauges, counters and alerts of the detector's signals; the records to send."""
        out: list[Output] = []
        for signal in signals:
            labels = (self.event_name, signal.scope, signal.name)
            self.mood_metrics.shift_active.labels(*labels).set(signal.state == "started")
            self.mood_metrics.shift_z.labels(*labels).set(signal.zscore)
            self.mood_metrics.signals.labels(self.event_name, signal.scope, signal.state).inc()
            record = signal_dict(signal, self.event_name)
            if self.alerts is not None:
                self.alerts.observe_signal(record)
            out.append((self.settings.topic_signals, f"{signal.scope}:{signal.name}".encode(),
                        dumps(record), None))
        return out

    async def emit(self, outputs: Sequence[Output]) -> None:
        """Send a batch's outputs; return when Kafka has acknowledged all of them."""
        send = self.app.producer.send
        futures = [await send(topic, key, value, None, None, headers)
                   for topic, key, value, headers in outputs]
        if futures:
            await asyncio.gather(*futures)

    def observe(self, batch: PreparedBatch, fresh: Sequence[bool],
                records: Sequence[RawRecord], timestamps: Sequence[float | None],
                started: float) -> None:
        """Metrics of one finished batch, and the offsets it covered (for lag)."""
        now = time.time()
        self.metrics.observe_batch(batch.posts, batch.reasons, fresh)
        self.safety_metrics.observe(batch.posts, fresh)
        if self.alerts is not None:
            self.alerts.observe_posts(batch.posts, fresh, now)
        for ts in timestamps:
            if ts:
                self.metrics.latency.observe(max(0.0, now - ts))
        for record in records:
            src = record.source
            key = (src["topic"], src["partition"])
            if src["offset"] > self.processed.get(key, -1):
                self.processed[key] = src["offset"]
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        self.last_batch_at = now
        self.metrics.last_batch.set(now)

    async def warm_up(self) -> None:
        """Start the child processes (and their language models) before the first batch."""
        if self.pool is not None:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*[loop.run_in_executor(self.pool, run_in_child, [])
                                   for _ in range(self.settings.cpu_processes)])

    # ---- lag, health, web ----

    def partition_samples(self) -> list[PartitionSample]:
        """Committed, processed and end offsets of the assigned partitions of this process's
        input: posts.raw, or posts.claims in a rumour process."""
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})  # no public API
        topic = self.settings.topic_claims if self.role == "rumours" else \
            self.settings.topic_raw
        return [PartitionSample(tp.topic, tp.partition, committed.get(tp),
                                self.processed.get((tp.topic, tp.partition)),
                                consumer.highwater(tp))
                for tp in consumer.assignment() if tp.topic == topic]

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end per assigned partition of this process's input (posts.raw,
        or posts.claims in a rumour process; ends known only)."""
        return {s.key: s.lag for s in self.partition_samples() if s.lag is not None}

    def update_lag_metrics(self) -> dict[tuple[str, int], int]:
        """Feed the stall watchdog and export lag, committed offsets and stall state (series
        of revoked partitions removed); returns the lag per partition."""
        samples = self.partition_samples()
        statuses = self.watchdog.observe(samples, self.watchdog_clock())
        self.metrics.observe_partitions(statuses, self.watchdog.revoked)
        for sample in samples:
            if sample.committed is not None:
                self.metrics.committed.labels(sample.topic, str(sample.partition)).set(
                    sample.committed)
        return {s.key: s.lag for s in statuses if s.lag is not None}

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """``/health``: unhealthy (503) while the store is unreachable, a partition is stalled
        (named in ``stalled_partitions``) or the worker is stopping."""
        lags = self.update_lag_metrics()
        store_ok = await self.store.ping()
        now = time.time()
        last = self.last_batch_at
        stalled = self.watchdog.stalled
        child = self.child
        child_ok = child is None or child.exit_code() is None
        ok = store_ok and child_ok and not stalled and not self.app.should_stop
        body = health_body(ok, event=self.event_name, store_ok=store_ok, lags=lags,
                           stalled=stalled, stall_after_s=self.watchdog.stall_after_s,
                           since_last_batch=None if last is None else now - last)
        if self.role != "all":
            body["role"] = self.role
        if child is not None:
            body["rumour_process"] = {"pid": child.pid, "running": child_ok,
                                      "port": self.settings.rumour_port}
        return ok, body

    def _register_web(self) -> None:
        pipeline = self

        @self.app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            pipeline.update_lag_metrics()
            return web.bytes(generate_latest(pipeline.registry),
                             content_type=CONTENT_TYPE_LATEST.split(";")[0])

        @self.app.page("/health")
        async def health(web: Any, request: Any) -> Any:
            ok, body = await pipeline.health()
            return web.json(body, status=200 if ok else 503)

    def _register_api(self) -> None:
        """``/api/*`` (JSON arrays for Grafana's Infinity datasource), and the bearer token
        of ``/metrics`` when ``CROWDWATCH_METRICS_TOKEN`` is set (see :func:`api_response`)."""
        pipeline = self
        access = ApiAccess.from_settings(self.settings)
        if not access.token and not access.loopback:
            log.warning("CROWDWATCH_WEB_HOST=%s is not a loopback address and "
                        "CROWDWATCH_API_TOKEN is not set: /api/* answers 403 (never expose "
                        "citizen data unauthenticated)", self.settings.web_host)

        def page(route: str) -> None:
            @self.app.page(f"/api/{route}", name=f"crowdwatch.api.{route}")
            async def api_page(web: Any, request: Any) -> Any:
                status, body, headers = await api_response(
                    route, pipeline.raw_store, pipeline.event_name, request.query,
                    request.headers, access)
                return web.json(body, status=status, headers=headers)

        for route in API_ROUTES:
            page(route)
        metrics_token = self.settings.metrics_token.get_secret_value()
        web_app = getattr(getattr(self.app, "web", None), "web_app", None) \
            if self.app.conf.web_enabled else None
        if metrics_token and web_app is not None:
            from aiohttp import web as aioweb

            @aioweb.middleware
            async def metrics_auth(request: Any, handler: Any) -> Any:
                if request.path == "/metrics" and not bearer_ok(request.headers, metrics_token):
                    return aioweb.json_response(
                        {"error": "unauthorized: /metrics needs Authorization: Bearer "
                                  "<CROWDWATCH_METRICS_TOKEN>"},
                        status=401, headers={"WWW-Authenticate": 'Bearer realm="crowdwatch"'})
                return await handler(request)

            web_app.middlewares.append(metrics_auth)

    def _register_timers(self) -> None:
        @self.app.task
        async def warm_up() -> None:
            await self.warm_up()

        self.watchdog = StallWatchdog(self.settings.stall_after_s,
                                      self.settings.stall_restart_s)
        self.watchdog_clock: Callable[[], float] = time.monotonic
        self._restart_held = False  # restart due but held back (store unreachable), logged

        if self.settings.malloc_trim_every_s > 0:
            @self.app.timer(interval=self.settings.malloc_trim_every_s,
                            name="crowdwatch.malloc_trim")
            async def malloc_trim() -> None:
                await self.trim_memory()

        @self.app.timer(interval=2.0)
        async def lag_timer() -> None:
            self.update_lag_metrics()
            await self.check_restart()

    async def trim_memory(self) -> int | None:
        """Hand malloc's free memory back to the OS (streams.runtime.trim_malloc), off the
        event loop; counts the bytes released."""
        released = await asyncio.get_running_loop().run_in_executor(None, trim_malloc)
        if released:
            self.metrics.malloc_trimmed.inc(released)
        return released

    async def check_restart(self) -> bool:
        """Restart when a partition has been stalled ``stall_restart_s`` — unless the state
        store is unreachable: the agents then wait for it by design and a restart cannot
        help (``/health`` and the alert still report the stall). True when restarting."""
        due = self.watchdog.restart_due
        if not due or self.app.should_stop or self.app.crashed:
            self._restart_held = False
            return False
        if await self.store.ping():
            await self.restart_stalled(due)
            return True
        if not self._restart_held:
            self._restart_held = True
            log.warning("stall watchdog: %s stalled, but the state store is unreachable: not "
                        "restarting (the agents go on when it is back)",
                        ", ".join(s.name for s in due))
        return False

    async def restart_stalled(self, due: Sequence[PartitionStatus]) -> None:
        """Stop the worker with exit code 1 (``app.crash``: mode's Worker re-raises the
        reason after shutting down) so systemd / compose / Kubernetes restarts it and the
        consumer group hands the stuck partitions out again."""
        names = ", ".join(f"{s.name} (lag {s.lag}, no progress for {s.idle_s:.0f} s)"
                          for s in due)
        log.error("stall watchdog: %s; stopping the worker (exit code 1) so that its "
                  "supervisor restarts it (CROWDWATCH_STALL_RESTART_S=%g, 0 = never)",
                  names, self.settings.stall_restart_s)
        self.metrics.watchdog_restarts.inc()
        await self._crash(WorkerStalledError(f"partitions stalled: {names}"))

    async def _crash(self, error: Exception) -> None:
        """Stop the worker with exit code 1 (``app.crash``), ``error`` raised first so that
        mode's crash log carries a traceback."""
        try:
            raise error
        except Exception as exc:  # mode re-raises it after shutting down
            await self.app.crash(exc)

    def watch_child(self, child: RumourProcess) -> None:
        """The worker stops (exit code 1) when its rumour process ends: its supervisor then
        restarts both (``streams.rumour_process``); ``/health`` fails meanwhile."""
        self.child = child

        @self.app.timer(interval=1.0, name="crowdwatch.rumour_process")
        async def watch_rumour_process() -> None:
            await self.check_child()

    async def check_child(self) -> bool:
        """True (and the worker crashing) when the rumour process has ended."""
        child = self.child
        code = child.exit_code() if child is not None else None
        if child is None or code is None or self.app.should_stop or self.app.crashed:
            return False
        log.error("the rumour process (pid %s) ended with exit code %d; stopping the worker "
                  "(exit code 1) so that its supervisor restarts both", child.pid, code)
        await self._crash(RumourProcessError(f"rumour process ended with exit code {code}"))
        return True

    def _stopping(self) -> bool:
        app = getattr(self, "app", None)
        return bool(app is not None and app.should_stop)

    def _register_state_guard(self) -> None:
        """At start and every few seconds: rebuild the counts from Kafka when Redis lost
        them (``streams.rebuild``). The rebuild runs beside the agents (it is idempotent)."""
        guard = self.state_guard

        @self.app.task
        async def state_guard_at_start() -> None:  # a timer's first run waits an interval
            await guard.check()

        @self.app.timer(interval=CHECK_EVERY_S, name="crowdwatch.state_guard", on_leader=False)
        async def state_guard() -> None:
            await guard.check()

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.score_executor.shutdown(wait=False, cancel_futures=True)
        if self.rumours is not None:
            self.rumours.close()
        if self.alerts is not None:
            await self.alerts.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        await self.store.close()


# ---- worker API (/api/*): plain functions, tested without a web server ----

API_MAX_ROWS = 500
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (the only hosts /api/* serves tokenless)."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_ok(headers: Mapping[str, str], token: str) -> bool:
    """``Authorization: Bearer <token>`` matches ``token`` (constant-time compare)."""
    scheme, _, given = (headers.get("Authorization") or headers.get("authorization")
                        or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class ApiAccess:
    """Who may read /api/*: with a token, whoever sends it; without one, anyone who can
    reach a loopback-bound worker; nobody on a non-loopback bind (403)."""

    def __init__(self, token: str, web_host: str) -> None:
        self.token = token
        self.web_host = web_host
        self.loopback = is_loopback(web_host)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiAccess:
        return cls(settings.api_token.get_secret_value(), settings.web_host)

    def check(self, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
        """None when allowed, else (status, error body)."""
        if self.token:
            if bearer_ok(headers, self.token):
                return None
            return 401, {"error": "unauthorized: send Authorization: Bearer "
                                  "<CROWDWATCH_API_TOKEN>"}
        if self.loopback:
            return None
        return 403, {"error": "forbidden: the worker listens on a non-loopback address "
                              "without CROWDWATCH_API_TOKEN; set one (never expose citizen "
                              "data unauthenticated)"}


class ApiError(ValueError):
    """A bad query parameter (400)."""


def _int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool_param(query: Mapping[str, str], name: str) -> bool:
    raw = (query.get(name) or "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ApiError(f"{name} must be 0 or 1, got {raw!r}")


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts.timestamp() if ts.tzinfo is not None else None


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return None


def _flat(doc: Mapping[str, Any], drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Scalar fields as they are, lists of scalars joined with ", ", others left out."""
    return {k: _scalar(v) for k, v in doc.items()
            if k not in drop and (_scalar(v) is not None or v is None)}


async def api_clusters(store: StateStore, event: str, query: Mapping[str, str],
                       now: float) -> list[dict[str, Any]]:
    """``/api/clusters?top=N``: the store's top clusters by rumour score (any worker
    answers; not only the one holding the claims partition)."""
    top = _int_param(query, "top", 20, 1, API_MAX_ROWS)
    rows = []
    for rank, snap in enumerate(await store.top_clusters(event, top), start=1):
        row: dict[str, Any] = {"rank": rank, "event": event}
        row.update(_flat(snap, frozenset({"stance", "sample_posts", "top_spreaders",
                                          "drivers"})))
        stance = snap.get("stance")
        stance = stance if isinstance(stance, Mapping) else {}
        for key in ("support", "deny", "query", "comment"):
            row[f"stance_{key}"] = int(stance.get(key, 0) or 0)
        drivers = snap.get("drivers")
        drivers = drivers if isinstance(drivers, Mapping) else {}
        for key in DRIVERS:  # the score's logit in four parts, and the strongest as text
            value = drivers.get(key)
            row[f"drivers_{key}"] = float(value) if isinstance(value, int | float) else None
        row["why"] = why(drivers)
        samples = snap.get("sample_posts") or []
        first = samples[0] if samples and isinstance(samples[0], Mapping) else {}
        row["sample_text"] = str(first.get("text") or "")
        row["samples"] = len(samples)
        # the one nested value: Infinity tables can expand it (root selector sample_posts)
        row["sample_posts"] = [{"id": str(p.get("id")), "text": str(p.get("text") or "")}
                               for p in samples if isinstance(p, Mapping)]
        last = _epoch(snap.get("last_seen"))
        row["idle_s"] = None if last is None else round(max(0.0, now - last), 1)
        rows.append(row)
    return rows


async def api_rebuttals(store: StateStore, event: str, query: Mapping[str, str],
                        now: float) -> list[dict[str, Any]]:
    """``/api/rebuttals``: one row per linked (official post, cluster) with its race."""
    from streams.rumours import LINKS, RACES

    links = await store.get_docs(event, LINKS)
    races = await store.get_docs(event, RACES)
    rows = []
    for key in sorted(set(links) | set(races)):
        link = links.get(key) or {}
        race = races.get(key) or {}
        row: dict[str, Any] = {
            "event": event,
            "official_post": link.get("official_post") or race.get("official_post"),
            "cluster": link.get("cluster") or race.get("cluster"),
            "link_source": link.get("source"), "linked_at": link.get("at"),
            "linked": bool(link),
        }
        row.update(_flat(race, frozenset({"official_post", "cluster", "episodes"})))
        episodes = race.get("episodes") or []
        row["episodes"] = len(episodes) if isinstance(episodes, list) else 0
        row.setdefault("state", None)
        row.setdefault("reach_ratio", None)
        rows.append(row)
    rows.sort(key=lambda r: (r.get("state") != "firing", -(r.get("rumour_reach") or 0),
                             str(r["official_post"]), str(r["cluster"])))
    return rows


async def api_webcare(store: StateStore, event: str, query: Mapping[str, str],
                      now: float) -> list[dict[str, Any]]:
    """``/api/webcare?all=0|1``: unanswered questions/complaints to official accounts,
    oldest first, with ``age_s`` (now - asked); ``all=1`` adds the answered ones after."""
    from streams.rumours import WEBCARE

    show_all = _bool_param(query, "all")
    rows = []
    for doc in (await store.get_docs(event, WEBCARE)).values():
        if not isinstance(doc, Mapping) or (doc.get("answered") and not show_all):
            continue
        row = {"event": event, **_flat(doc, frozenset({"event", "age_s"}))}
        asked = _epoch(doc.get("created_at"))
        row["age_s"] = None if doc.get("answered") or asked is None \
            else round(max(0.0, now - asked), 1)
        row["answered"] = bool(doc.get("answered"))
        rows.append(row)
    rows.sort(key=lambda r: (r["answered"], _epoch(r.get("created_at")) is None,
                             _epoch(r.get("created_at")) or 0.0, str(r.get("id"))))
    return rows


async def api_official_posts(store: StateStore, event: str, query: Mapping[str, str],
                             now: float) -> list[dict[str, Any]]:
    """``/api/official_posts``: reach of every official post, newest first."""
    from streams.rumours import REACH

    rows = []
    for doc in (await store.get_docs(event, REACH)).values():
        if not isinstance(doc, Mapping):
            continue
        row = {"event": event, **_flat(doc, frozenset({"curve", "time_to_reposts"}))}
        ttr = doc.get("time_to_reposts")
        ttr = ttr if isinstance(ttr, Mapping) else {}
        for n, seconds in sorted(ttr.items(), key=lambda kv: int(kv[0])
                                 if str(kv[0]).isdigit() else 0):
            row[f"time_to_{n}_reposts_s"] = seconds
        curve = doc.get("curve") or []
        row["active_minutes"] = len(curve) if isinstance(curve, list) else 0
        row["last_engagement_minute"] = curve[-1][0] if curve and isinstance(curve[-1], list) \
            else None
        rows.append(row)
    rows.sort(key=lambda r: (_epoch(r.get("first_seen")) or 0.0, str(r.get("id"))),
              reverse=True)
    return rows


API_ROUTES = {
    "clusters": api_clusters,
    "rebuttals": api_rebuttals,
    "webcare": api_webcare,
    "official_posts": api_official_posts,
}
_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="crowdwatch"'}


async def api_response(route: str, store: StateStore, event: str, query: Mapping[str, str],
                       headers: Mapping[str, str], access: ApiAccess,
                       now: float | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, response headers) of ``GET /api/<route>``: 200 with a JSON
    array of flat objects; 401/403 (see :class:`ApiAccess`), 400 (bad parameter), 404,
    503 (store unreachable) with ``{"error": ...}``."""
    denied = access.check(headers)
    if denied is not None:
        status, body = denied
        return status, body, dict(_UNAUTHORIZED) if status == 401 else {}
    handler = API_ROUTES.get(route)
    if handler is None:
        return 404, {"error": f"no such API route: {route}"}, {}
    try:
        rows = await handler(store, event, query, time.time() if now is None else now)
    except ApiError as exc:
        return 400, {"error": str(exc)}, {}
    except Exception as exc:  # redis errors are not OSErrors
        log.warning("/api/%s: state store read failed: %s", route, exc.__class__.__name__)
        return 503, {"error": "state store unreachable"}, {"Retry-After": "5"}
    return 200, rows, {"Cache-Control": "no-store"}
