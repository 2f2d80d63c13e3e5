"""Event alerts pushed straight to Alertmanager (``POST /api/v2/alerts``), not via rules.

Two kinds of incident, each one alert (one label set) however many posts feed it:

* ``CrowdSafetyPosts`` -- crowd-safety posts (``models.safety``) inside an event area:
  one incident per (event, area, category). Labels: alertname, event, area, category,
  severity, team, source; annotations: summary, description (nl + en), up to
  ``samples`` example texts (``@mentions`` masked), the post count, first/last seen, the
  dashboard and runbook links. Never post ids or handles in labels.
* ``MoodShiftSignal`` -- the pipeline's mood-shift detector (``signals``): started opens
  the incident, ended resolves it.
* ``RumourClusterFlagged`` -- a claim cluster flagged as rumour (``models.rumour_tracker``):
  one incident per cluster (label ``cluster``: an Alertmanager label, never a Prometheus
  one), with its claim, score, size, lifecycle state and sample posts; resolved when the
  cluster's state becomes ``resolved`` or it expires.

The incident map lives in memory. A live incident is re-pushed every ``renew_s`` (and at
most every ``update_s`` when new posts changed its annotations) with ``endsAt`` = the time
it would resolve, so Alertmanager resolves it by itself if this worker dies; when no new
safety post arrived for ``resolve_after_s`` (or the mood shift ended) it is pushed once
with ``endsAt`` = now and forgotten. Alertmanager groups by (alertname, event, area) and
notifies once per group, not per push.

With several workers each one holds the incidents of the posts it processed; the label
sets are the same, so Alertmanager merges them into one alert (the annotations of the
latest push win).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.enrich import PostSummary
from models.rumour import why
from streams.alertmanager import Alert, AlertmanagerClient, AlertmanagerError, iso

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)

SAFETY_ALERT = "CrowdSafetyPosts"
MOOD_ALERT = "MoodShiftSignal"
RUMOUR_ALERT = "RumourClusterFlagged"
#: crowd crush, violence and fire page the commanders at once; medical is a warning
CRITICAL_CATEGORIES = frozenset({"crowd_crush", "violence", "fire_smoke"})
CATEGORY_NAMES = {
    "crowd_crush": ("gedrang / verdrukking", "crowd crush"),
    "violence": ("geweld", "violence"),
    "fire_smoke": ("brand / rook", "fire / smoke"),
    "medical": ("medisch", "medical"),
}

_RT = re.compile(r"^RT @\S+:\s*")
_MENTION = re.compile(r"(?<!\w)@[\w.\-]+(?:@[\w.\-]+)?")


class AlertsSettings(BaseSettings):
    """``CROWDWATCH_ALERTS_*``: the event-alerts agent (the Alertmanager URL itself is
    ``CROWDWATCH_ALERTMANAGER_URL``)."""

    model_config = SettingsConfigDict(env_prefix="CROWDWATCH_ALERTS_", frozen=True,
                                      extra="ignore")

    enabled: bool = Field(default=True, description="Push event alerts when an Alertmanager "
                          "URL is configured")
    tick_s: float = Field(default=1.0, gt=0, description="How often incidents are checked")
    min_posts: int = Field(default=1, ge=1, description="Safety posts in an area before the "
                           "incident is pushed")
    resolve_after_s: float = Field(default=600.0, gt=0, description="No new safety post for "
                                   "this long: resolved")
    renew_s: float = Field(default=60.0, gt=0, description="Re-push a live incident this often")
    update_s: float = Field(default=10.0, ge=0, description="At most this often when new posts "
                            "changed it")
    mood_alive_s: float = Field(default=900.0, gt=0, description="endsAt of a mood incident "
                                "ahead of its last push")
    samples: int = Field(default=3, ge=0, le=10, description="Example posts per incident")
    sample_chars: int = Field(default=200, ge=20)
    dashboard_url: str = "http://127.0.0.1:3000/d/crowdwatch-overview"
    runbook_base: str = "docs/operations.md"
    push_timeout_s: float = Field(default=5.0, gt=0)


def mask(text: str, limit: int) -> str:
    """A sample text for an annotation: retweet prefix dropped, @mentions masked, one line."""
    text = _MENTION.sub("@…", _RT.sub("", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _why(text: object, lead: str) -> str:
    """``"; mainly: spread +0.9, claim -0.6"`` for a rumour alert, or nothing."""
    return f"; {lead}: {text}" if isinstance(text, str) and text else ""


@dataclass
class Incident:
    labels: dict[str, str]
    first_at: float
    last_at: float
    posts: int = 0
    samples: deque[str] = field(default_factory=deque)
    info: dict[str, str] = field(default_factory=dict)
    pushed_at: float | None = None
    changed: bool = True
    ended: bool = False


class EventAlerts:
    """The incident map; :meth:`due` turns it into alerts to push (pure, time injected)."""

    def __init__(self, event: str, settings: AlertsSettings | None = None,
                 client: AlertmanagerClient | None = None) -> None:
        self.event = event
        self.settings = settings or AlertsSettings()
        self.client = client
        self.incidents: dict[tuple[str, ...], Incident] = {}
        self.pushes = 0
        self.push_failures = 0
        self._last_error_log = 0.0

    # ---- inputs

    def observe_posts(self, posts: Sequence[PostSummary], fresh: Sequence[bool],
                      now: float | None = None) -> None:
        """Fresh crowd-safety posts inside an area feed that area's incident."""
        now = time.time() if now is None else now
        cfg = self.settings
        for post, is_new in zip(posts, fresh, strict=True):
            if not is_new or post.safety is None:
                continue
            for area in post.areas:  # posts with no area are counted in metrics only
                key = (SAFETY_ALERT, area, post.safety)
                inc = self.incidents.get(key)
                if inc is None or inc.ended:
                    inc = self.incidents[key] = Incident(
                        labels={
                            "alertname": SAFETY_ALERT, "event": self.event, "area": area,
                            "category": post.safety,
                            "severity": ("critical" if post.safety in CRITICAL_CATEGORIES
                                         else "warning"),
                            "team": "commanders", "source": "worker",
                        },
                        first_at=now, last_at=now, samples=deque(maxlen=cfg.samples))
                inc.posts += 1
                inc.last_at = now
                inc.changed = True
                if post.safety_text and cfg.samples:
                    inc.samples.append(mask(post.safety_text, cfg.sample_chars))

    def observe_signal(self, record: Mapping[str, Any], now: float | None = None) -> None:
        """A ``signals`` record (``models.mood.signal_dict``)."""
        if record.get("type") != "mood_shift":
            return
        now = time.time() if now is None else now
        scope, name = str(record.get("scope")), str(record.get("name"))
        key = (MOOD_ALERT, scope, name)
        if record.get("state") == "started":
            labels = {"alertname": MOOD_ALERT, "event": self.event, "scope": scope,
                      "severity": "warning", "team": "commanders", "source": "worker"}
            labels["area" if scope == "area" else "topic"] = name
            self.incidents[key] = Incident(labels=labels, first_at=now, last_at=now, info={
                k: str(record.get(k)) for k in ("current_mood", "baseline_mood", "zscore",
                                                "posts_in_window")})
        elif record.get("state") == "ended" and key in self.incidents:
            inc = self.incidents[key]
            inc.ended = inc.changed = True
            inc.last_at = now
            if record.get("reason") == "quiet":  # said in the resolving push's text
                inc.info["ended"] = "quiet"

    def observe_cluster(self, snapshot: Mapping[str, Any], ended: bool,
                        now: float | None = None) -> None:
        """A flagged cluster's snapshot (``RumourTracker.snapshot``); ``ended``: resolved or
        expired."""
        now = time.time() if now is None else now
        cid = str(snapshot.get("id"))
        key = (RUMOUR_ALERT, cid)
        inc = self.incidents.get(key)
        if ended:
            if inc is not None and not inc.ended:
                inc.ended = inc.changed = True
                inc.last_at = now
            return
        if inc is None or inc.ended:
            inc = self.incidents[key] = Incident(
                labels={"alertname": RUMOUR_ALERT, "event": self.event, "cluster": cid,
                        "severity": "warning", "team": "communication", "source": "worker"},
                first_at=now, last_at=now, samples=deque(maxlen=self.settings.samples))
        drivers = snapshot.get("drivers")
        info = {"claim": mask(str(snapshot.get("summary") or ""), self.settings.sample_chars),
                "score": f"{float(snapshot.get('rumour_score') or 0):.2f}",
                "size": str(snapshot.get("size")), "state": str(snapshot.get("state")),
                "first_seen": str(snapshot.get("first_seen")),
                "query_deny": str(sum(int((snapshot.get("stance") or {}).get(k, 0))
                                      for k in ("query", "deny"))),
                # what drives the score (models.rumour.DRIVERS), strongest first
                "why_nl": why(drivers, "nl"), "why_en": why(drivers, "en")}
        if info != inc.info:
            inc.info = info
            inc.changed = True
            inc.last_at = now
            inc.posts = int(snapshot.get("size") or 0)
            inc.samples.clear()
            for sample in (snapshot.get("sample_posts") or [])[: self.settings.samples]:
                text = str(sample.get("text") or "") if isinstance(sample, Mapping) else ""
                if text:
                    inc.samples.append(mask(text, self.settings.sample_chars))

    # ---- outputs

    def _annotations(self, inc: Incident) -> dict[str, str]:
        cfg = self.settings
        lab = inc.labels
        area = lab.get("area", "")
        link = f"{cfg.dashboard_url}?var-event={self.event}" + (f"&var-area={area}" if area else "")
        if lab["alertname"] == SAFETY_ALERT:
            nl, en = CATEGORY_NAMES.get(lab["category"], (lab["category"], lab["category"]))
            out = {
                "summary": f"{inc.posts} crowd-safety post(s) ({en}) in {area}",
                "description": (
                    f"NL: {inc.posts} bericht(en) over {nl} in {area} sinds "
                    f"{time.strftime('%H:%M:%S', time.localtime(inc.first_at))}. "
                    "Controleer met camera's en mensen ter plaatse.\n"
                    f"EN: {inc.posts} post(s) about {en} in {area} since "
                    f"{time.strftime('%H:%M:%S', time.localtime(inc.first_at))}. "
                    "Verify with cameras and staff on the ground."),
                "posts": str(inc.posts),
                "first_seen": iso(inc.first_at),
                "last_seen": iso(inc.last_at),
                "runbook_url": f"{cfg.runbook_base}#crowdsafetyposts",
            }
            if inc.samples:
                out["samples"] = "\n".join(f"- {s}" for s in inc.samples)
        elif lab["alertname"] == RUMOUR_ALERT:
            i = inc.info
            out = {
                "summary": f"Rumour flagged: {i.get('claim', '')}",
                "description": (
                    f"NL: Mogelijk gerucht (score {i.get('score')}, {i.get('size')} berichten, "
                    f"fase {i.get('state')}, {i.get('query_deny')} twijfelende/ontkennende "
                    f"reacties{_why(i.get('why_nl'), 'vooral')}). Beoordeel en overweeg een "
                    "weerlegging.\n"
                    f"EN: Possible rumour (score {i.get('score')}, {i.get('size')} posts, "
                    f"state {i.get('state')}, {i.get('query_deny')} enquiring/denying replies"
                    f"{_why(i.get('why_en'), 'mainly')}). Assess it and consider a rebuttal."),
                "posts": i.get("size", ""),
                "first_seen": i.get("first_seen", ""),
                "cluster": lab["cluster"],
                "runbook_url": f"{cfg.runbook_base}#rumourclusterflagged",
            }
            if inc.samples:
                out["samples"] = "\n".join(f"- {s}" for s in inc.samples)
        else:
            what = lab.get("area") or lab.get("topic", "")
            z, cur, base = (inc.info.get(k, "?") for k in ("zscore", "current_mood",
                                                            "baseline_mood"))
            out = {
                "summary": f"Negative mood shift in {what} (z = {z})",
                "description": (
                    f"NL: De stemming over {what} is omgeslagen: {cur} tegen {base} in de "
                    f"basisperiode (z = {z}).\n"
                    f"EN: Mood about {what} shifted negative: {cur} against a baseline of "
                    f"{base} (z = {z})."),
                "posts": inc.info.get("posts_in_window", ""),
                "runbook_url": f"{cfg.runbook_base}#moodshiftsignal",
            }
            if inc.info.get("ended") == "quiet":  # not a recovery: nobody posts about it
                out["description"] += (
                    f"\nNL: Beëindigd omdat er niet meer over {what} wordt gepost, niet "
                    f"omdat de stemming herstelde.\nEN: Ended because nobody posts about "
                    f"{what} any more, not because the mood recovered.")
        out["dashboard_url"] = link
        return out

    def due(self, now: float) -> list[tuple[tuple[str, ...], Alert]]:
        """Alerts to push now (new, changed, to renew, or to resolve)."""
        cfg = self.settings
        out = []
        for key, inc in self.incidents.items():
            is_safety = inc.labels["alertname"] == SAFETY_ALERT
            if is_safety and not inc.ended and now - inc.last_at >= cfg.resolve_after_s:
                inc.ended = inc.changed = True
            if inc.ended and inc.pushed_at is None:  # never announced: forget it quietly
                out.append((key, Alert({}, {})))
                continue
            if is_safety and inc.posts < cfg.min_posts:
                continue
            if inc.ended:
                ends = now
            else:
                since = None if inc.pushed_at is None else now - inc.pushed_at
                if not (since is None or since >= cfg.renew_s
                        or (inc.changed and since >= cfg.update_s)):
                    continue
                ends = (inc.last_at + cfg.resolve_after_s if is_safety
                        else now + cfg.mood_alive_s)
            out.append((key, Alert(inc.labels, self._annotations(inc), starts_at=inc.first_at,
                                   ends_at=max(ends, now))))
        return out

    def mark_pushed(self, keys: Sequence[tuple[str, ...]], now: float) -> None:
        for key in keys:
            inc = self.incidents.get(key)
            if inc is None:
                continue
            if inc.ended:
                del self.incidents[key]
            else:
                inc.pushed_at = now
                inc.changed = False

    async def flush(self, now: float | None = None) -> int:
        """Push what is due; returns the number of alerts pushed (0 on failure: retried on
        the next tick)."""
        now = time.time() if now is None else now
        due = self.due(now)
        if not due:
            return 0
        silent = [k for k, a in due if not a.labels]
        self.mark_pushed(silent, now)
        real = [(k, a) for k, a in due if a.labels]
        if not real or self.client is None:
            return 0
        try:
            await self.client.push([a for _, a in real])
        except AlertmanagerError as exc:
            self.push_failures += 1
            if now - self._last_error_log > 60:
                self._last_error_log = now
                log.warning("event alerts not pushed (retrying every %.0fs): %s",
                            self.settings.tick_s, exc)
            return 0
        self.pushes += len(real)
        self.mark_pushed([k for k, _ in real], now)
        return len(real)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def register(pipeline: Pipeline) -> EventAlerts | None:
    """The event-alerts agent of a pipeline, or None when no Alertmanager is configured
    (``CROWDWATCH_ALERTMANAGER_URL``) or ``CROWDWATCH_ALERTS_ENABLED=false``."""
    settings = AlertsSettings()
    url = pipeline.settings.alertmanager_url.strip()
    if not settings.enabled or not url:
        return None
    alerts = EventAlerts(pipeline.event_name, settings,
                         AlertmanagerClient(url, timeout_s=settings.push_timeout_s))

    @pipeline.app.timer(interval=settings.tick_s, name="crowdwatch.alerts")
    async def push_alerts() -> None:
        await alerts.flush()

    return alerts
