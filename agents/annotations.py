"""Grafana annotations from the worker: a flagged rumour cluster, a new official post.

The rumour stage calls :meth:`EventAnnotations.observe_cluster` and
:meth:`EventAnnotations.observe_official` on its publish path (cheap: a set lookup and a
queue append); a Faust timer posts what is queued with :class:`streams.grafana.
GrafanaAnnotations` (aiohttp, off the rumour stage's path). One annotation per cluster and
per official post per worker process: an id is remembered once its annotation is queued;
a failed post stays queued and is retried on the next tick. Annotations are placed at the
wall-clock time the worker saw the flag (that is where the Prometheus graphs show it); the
event time of the flag is in the text.

Configured with ``CROWDWATCH_GRAFANA_URL`` and ``CROWDWATCH_GRAFANA_TOKEN`` (both needed)
and ``CROWDWATCH_ANNOTATIONS_*`` (:class:`AnnotationsSettings`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.alerts import mask
from models.rumour import why
from streams.grafana import GrafanaAnnotations, GrafanaError

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)

BASE_TAG = "crowdwatch"


class AnnotationsSettings(BaseSettings):
    """``CROWDWATCH_ANNOTATIONS_*``: the Grafana-annotations agent (the Grafana URL and
    token are ``CROWDWATCH_GRAFANA_URL`` / ``CROWDWATCH_GRAFANA_TOKEN``)."""

    model_config = SettingsConfigDict(env_prefix="CROWDWATCH_ANNOTATIONS_", frozen=True,
                                      extra="ignore")

    enabled: bool = Field(default=True, description="Post annotations when Grafana is "
                          "configured")
    tick_s: float = Field(default=2.0, gt=0, description="How often queued annotations are "
                          "posted")
    dashboard_uid: str = Field(default="", description="Pin annotations to one dashboard "
                               "(empty: organisation-wide, matched by tags)")
    max_queue: int = Field(default=1000, ge=1, description="Queued annotations kept while "
                           "Grafana is down (oldest dropped)")
    claim_chars: int = Field(default=160, ge=20)
    timeout_s: float = Field(default=5.0, gt=0)


@dataclass
class Annotation:
    key: str  # "cluster:<id>" or "official:<post id>"
    text: str
    tags: list[str]
    at: float
    attempts: int = 0


class EventAnnotations:
    """Queue of annotations to post; :meth:`flush` posts them (time injected for tests)."""

    def __init__(self, event: str, settings: AnnotationsSettings | None = None,
                 client: GrafanaAnnotations | None = None) -> None:
        self.event = event
        self.settings = settings or AnnotationsSettings()
        self.client = client
        self.seen: set[str] = set()
        self.queue: deque[Annotation] = deque()
        self.posted = 0
        self.failures = 0
        self.dropped = 0
        self._last_error_log = 0.0

    def _enqueue(self, item: Annotation) -> None:
        if len(self.queue) >= self.settings.max_queue:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(item)

    def observe_cluster(self, snapshot: Mapping[str, Any], now: float | None = None) -> bool:
        """A cluster snapshot (``RumourTracker.snapshot``); queues an annotation the first
        time it is flagged. Returns True when one was queued."""
        cid = str(snapshot.get("id") or "")
        key = f"cluster:{cid}"
        if not cid or not snapshot.get("flagged") or key in self.seen:
            return False
        self.seen.add(key)
        claim = mask(str(snapshot.get("summary") or ""), self.settings.claim_chars)
        score = float(snapshot.get("rumour_score") or 0.0)
        size = int(snapshot.get("size") or 0)
        flagged_at = snapshot.get("flagged_at") or ""
        reason = why(snapshot.get("drivers"), "en")
        text = (f"Gerucht gemarkeerd / rumour flagged: “{claim}” — score {score:.2f}, "
                f"{size} berichten/posts (cluster {cid}"
                + (f", flagged at {flagged_at}" if flagged_at else "")
                + (f"; why: {reason}" if reason else "") + ")")
        self._enqueue(Annotation(key, text, [BASE_TAG, "rumour", self.event],
                                 time.time() if now is None else now))
        return True

    def observe_official(self, doc: Mapping[str, Any], now: float | None = None) -> bool:
        """An official post's reach row (``ReachTracker.summary``); queues an annotation the
        first time the post is seen."""
        pid = str(doc.get("id") or "")
        key = f"official:{pid}"
        if not pid or key in self.seen:
            return False
        self.seen.add(key)
        role = str(doc.get("role") or "other")
        account = str(doc.get("account") or "?")
        kind = str(doc.get("kind") or "post")
        first = doc.get("first_seen") or ""
        text = (f"Officieel bericht / official post: {account} ({role}, {kind}) — {pid}"
                + (f", posted {first}" if first else ""))
        self._enqueue(Annotation(key, text, [BASE_TAG, "official", role, self.event],
                                 time.time() if now is None else now))
        return True

    async def flush(self, now: float | None = None) -> int:
        """Post the queue in order; stop at the first failure (retried on the next tick).
        Returns the number posted."""
        if self.client is None or not self.queue:
            return 0
        now = time.time() if now is None else now
        posted = 0
        try:
            posted = await self._post_queue(now)
        finally:
            await self.client.close()  # one short-lived session per tick: nothing to clean up
        self.posted += posted
        return posted

    async def _post_queue(self, now: float) -> int:
        if self.client is None:  # pragma: no cover - flush checks
            return 0
        posted = 0
        while self.queue:
            item = self.queue[0]
            item.attempts += 1
            try:
                await self.client.add(item.text, item.tags, at=item.at,
                                      dashboard_uid=self.settings.dashboard_uid)
            except GrafanaError as exc:
                self.failures += 1
                if exc.status is not None and 400 <= exc.status < 500 \
                        and exc.status not in (401, 403, 429):
                    self.queue.popleft()  # Grafana will not take this one: do not loop on it
                    log.warning("Grafana annotation %s dropped: %s", item.key, exc)
                    continue
                if now - self._last_error_log > 60:
                    self._last_error_log = now
                    log.warning("Grafana annotations not posted (%d queued, retrying every "
                                "%.0fs): %s", len(self.queue), self.settings.tick_s, exc)
                break
            self.queue.popleft()
            posted += 1
        return posted

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def register(pipeline: Pipeline) -> EventAnnotations | None:
    """The annotations agent of a pipeline, or None when Grafana is not configured
    (``CROWDWATCH_GRAFANA_URL`` and ``CROWDWATCH_GRAFANA_TOKEN``) or
    ``CROWDWATCH_ANNOTATIONS_ENABLED=false``."""
    settings = AnnotationsSettings()
    url = pipeline.settings.grafana_url.strip()
    token = pipeline.settings.grafana_token.get_secret_value()
    if not settings.enabled or not url:
        return None
    if not token:
        log.warning("CROWDWATCH_GRAFANA_URL is set but CROWDWATCH_GRAFANA_TOKEN is not: "
                    "no Grafana annotations")
        return None
    try:
        client = GrafanaAnnotations(url, token, timeout_s=settings.timeout_s)
    except GrafanaError as exc:
        log.warning("no Grafana annotations: %s", exc)
        return None
    annotations = EventAnnotations(pipeline.event_name, settings, client)

    @pipeline.app.timer(interval=settings.tick_s, name="crowdwatch.annotations")
    async def post_annotations() -> None:
        await annotations.flush()

    return annotations
