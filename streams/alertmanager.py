"""A small Alertmanager v2 API client (aiohttp): push alerts, read status.

``POST /api/v2/alerts`` takes a list of alerts; an alert is identified by its label set, so
pushing the same labels again updates it (annotations, ``endsAt``) instead of adding one.
``endsAt`` in the future keeps it firing until then; ``endsAt`` = now resolves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

__all__ = ["Alert", "AlertmanagerClient", "AlertmanagerError", "iso", "push_once"]


class AlertmanagerError(RuntimeError):
    """The Alertmanager could not be reached or refused the request (one clear line)."""


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds, as the v2 API expects."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float | None = None
    ends_at: float | None = None
    generator_url: str = ""

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"labels": dict(self.labels),
                               "annotations": dict(self.annotations)}
        if self.starts_at is not None:
            out["startsAt"] = iso(self.starts_at)
        if self.ends_at is not None:
            out["endsAt"] = iso(self.ends_at)
        if self.generator_url:
            out["generatorURL"] = self.generator_url
        return out


class AlertmanagerClient:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        if not url.strip():
            raise AlertmanagerError("no Alertmanager URL configured (CROWDWATCH_ALERTMANAGER_URL)")
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.url + path
        try:
            async with self._client().request(method, url, json=body) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise AlertmanagerError(
                        f"{method} {url} answered HTTP {resp.status}: {text.strip()[:300]}")
                return await resp.json(content_type=None) if text.strip() else None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AlertmanagerError(
                f"Alertmanager at {self.url} unreachable: {exc.__class__.__name__}: {exc}"
            ) from exc

    async def push(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            await self._request("POST", "/api/v2/alerts", [a.to_api() for a in alerts])

    async def status(self) -> dict[str, Any]:
        data = await self._request("GET", "/api/v2/status")
        return data if isinstance(data, dict) else {}

    async def alerts(self, filters: Sequence[str] = ()) -> list[dict[str, Any]]:
        query = "".join(f"&filter={f}" for f in filters).lstrip("&")
        data = await self._request("GET", "/api/v2/alerts" + (f"?{query}" if query else ""))
        return data if isinstance(data, list) else []

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def push_once(url: str, alerts: Sequence[Alert], *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Push ``alerts`` and return the Alertmanager's status (for the CLI); raises
    :class:`AlertmanagerError`."""

    async def run() -> dict[str, Any]:
        client = AlertmanagerClient(url, timeout_s=timeout_s)
        try:
            await client.push(alerts)
            return await client.status()
        finally:
            await client.close()

    return asyncio.run(run())
