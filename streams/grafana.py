"""Grafana over its HTTP API: annotations from the worker (aiohttp, non-blocking) and
``crowdwatch dashboards push`` (grafana-client, blocking, CLI only).

Annotations: ``POST /api/annotations`` with ``{"time": ms, "tags": [...], "text": ...}``
(optionally ``dashboardUID``/``panelId``; without them the annotation is organisation-wide
and shows on every dashboard whose annotation query matches its tags).

Dashboards: ``POST /api/dashboards/db`` with ``{"dashboard": ..., "overwrite": true,
"folderUid": ...}`` through :meth:`grafana_client.GrafanaApi.dashboard.update_dashboard`;
the folder is looked up by title (``GET /api/folders``) and created when missing
(``POST /api/folders``). Tokens are sent as ``Authorization: Bearer`` and never logged.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

__all__ = [
    "EXIT_AUTH",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "GrafanaAnnotations",
    "GrafanaError",
    "PushReport",
    "PushResult",
    "folder_uid",
    "load_dashboards",
    "push_dashboards",
    "redact",
]

#: exit codes of ``crowdwatch dashboards push``
EXIT_REJECTED = 1  # Grafana refused at least one dashboard (412, 400, 403 on a folder, 5xx)
EXIT_USAGE = 2  # no token, no dashboards, unreadable JSON
EXIT_UNREACHABLE = 3  # connection refused, DNS, timeout
EXIT_AUTH = 4  # 401 (bad or expired token) or 403 (token lacks permission)


class GrafanaError(RuntimeError):
    """Grafana could not be reached or refused a request (one clear line; no token)."""

    def __init__(self, message: str, *, status: int | None = None,
                 exit_code: int = EXIT_REJECTED) -> None:
        super().__init__(message)
        self.status = status
        self.exit_code = exit_code


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part (for messages)."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url.strip())


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url:
        raise GrafanaError("no Grafana URL configured (--url or CROWDWATCH_GRAFANA_URL)",
                           exit_code=EXIT_USAGE)
    if not url.startswith(("http://", "https://")):
        raise GrafanaError(f"Grafana URL must start with http:// or https://: {url!r}",
                           exit_code=EXIT_USAGE)
    return url


# ---------------------------------------------------------------- annotations (worker)


class GrafanaAnnotations:
    """Posts annotations with aiohttp (one session, reused)."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 5.0) -> None:
        self.url = _base(url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self._headers)
        return self._session

    async def add(self, text: str, tags: Sequence[str], *, at: float | None = None,
                  dashboard_uid: str = "", panel_id: int | None = None) -> int | None:
        """Add one annotation at ``at`` (epoch s, default now); returns its id."""
        body: dict[str, Any] = {"time": int(1000 * (time.time() if at is None else at)),
                                "tags": list(tags), "text": text}
        if dashboard_uid:
            body["dashboardUID"] = dashboard_uid
            if panel_id is not None:
                body["panelId"] = panel_id
        url = f"{self.url}/api/annotations"
        shown = f"{redact(self.url)}/api/annotations"
        try:
            async with self._client().post(url, json=body) as resp:
                raw = await resp.text()
                if resp.status >= 300:
                    raise GrafanaError(
                        f"POST {shown} answered HTTP {resp.status}: {_message(raw)}",
                        status=resp.status,
                        exit_code=EXIT_AUTH if resp.status in (401, 403) else EXIT_REJECTED)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GrafanaError(f"Grafana at {redact(self.url)} unreachable: "
                               f"{exc.__class__.__name__}: {exc}",
                               exit_code=EXIT_UNREACHABLE) from exc
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return None
        ident = data.get("id") if isinstance(data, dict) else None
        return int(ident) if isinstance(ident, int) else None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _message(raw: str) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.strip()[:300]
    if isinstance(data, dict) and data.get("message"):
        status = f" ({data['status']})" if data.get("status") else ""
        return f"{data['message']}{status}"
    return raw.strip()[:300]


# ---------------------------------------------------------------- dashboards push (CLI)


@dataclass(frozen=True)
class PushResult:
    path: Path
    title: str
    uid: str
    ok: bool
    url: str = ""
    version: int | None = None
    error: str = ""


@dataclass(frozen=True)
class PushReport:
    grafana_version: str
    folder_uid: str | None
    results: list[PushResult]

    @property
    def failed(self) -> list[PushResult]:
        return [r for r in self.results if not r.ok]


def load_dashboards(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.json`` in ``directory`` (sorted), as the dashboard model: a plain
    dashboard, or an export wrapped as ``{"dashboard": ..., "meta": ...}``."""
    if not directory.is_dir():
        raise GrafanaError(f"{directory}: no such directory", exit_code=EXIT_USAGE)
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise GrafanaError(f"{path}: not readable JSON: {exc}", exit_code=EXIT_USAGE) from None
        if isinstance(data, dict) and isinstance(data.get("dashboard"), dict):
            data = data["dashboard"]
        if not isinstance(data, dict) or not isinstance(data.get("title"), str) \
                or not isinstance(data.get("panels", []), list):
            raise GrafanaError(f"{path}: not a Grafana dashboard (an object with a title)",
                               exit_code=EXIT_USAGE)
        out.append((path, data))
    if not out:
        raise GrafanaError(f"{directory}: no *.json dashboards", exit_code=EXIT_USAGE)
    return out


def folder_uid(title: str) -> str:
    """A stable folder uid from its title (at most 40 characters, as Grafana requires)."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "folder"
    return slug[:40]


def _explain(exc: Exception, what: str) -> GrafanaError:
    """grafana-client and niquests exceptions -> one clear :class:`GrafanaError`."""
    from grafana_client.client import GrafanaException, GrafanaTimeoutError

    if isinstance(exc, GrafanaTimeoutError):
        return GrafanaError(f"{what}: Grafana did not answer in time ({exc})",
                            exit_code=EXIT_UNREACHABLE)
    if isinstance(exc, GrafanaException):
        status = int(exc.status_code or 0)
        response = exc.response
        detail = ""
        if isinstance(response, dict):
            detail = str(response.get("message") or "")
            if response.get("status"):
                detail += f" ({response['status']})"
        elif isinstance(response, str):
            detail = response.strip()[:300]
        detail = detail or str(exc)
        if status == 401:
            return GrafanaError(f"{what}: HTTP 401 unauthorized — the token is wrong, expired "
                                "or revoked (a service-account token, role Editor)",
                                status=401, exit_code=EXIT_AUTH)
        if status == 403:
            return GrafanaError(f"{what}: HTTP 403 forbidden — the token's role may not do "
                                f"this (needs Editor on the folder): {detail}", status=403,
                                exit_code=EXIT_AUTH)
        if status == 412:
            return GrafanaError(
                f"{what}: HTTP 412 precondition failed: {detail} — another dashboard with the "
                "same title (and another uid) exists in that folder, or a provisioned/plugin "
                "dashboard holds this uid; rename or delete it in Grafana", status=412)
        if status == 0:
            return GrafanaError(f"{what}: {detail}", exit_code=EXIT_UNREACHABLE)
        return GrafanaError(f"{what}: HTTP {status}: {detail}", status=status)
    if isinstance(exc, OSError):  # niquests' ConnectionError, InvalidURL, ... are OSErrors
        return GrafanaError(f"{what}: unreachable: {exc.__class__.__name__}: {exc}",
                            exit_code=EXIT_UNREACHABLE)
    return GrafanaError(f"{what}: {exc.__class__.__name__}: {exc}")


def _ensure_folder(api: Any, title: str, where: str) -> str:
    from grafana_client.client import GrafanaException

    try:
        for folder in api.folder.get_all_folders() or []:
            if isinstance(folder, dict) and folder.get("title") == title:
                return str(folder["uid"])
        created = api.folder.create_folder(title, uid=folder_uid(title))
    except (GrafanaException, OSError) as exc:
        raise _explain(exc, f"folder {title!r} at {where}") from None
    return str(created["uid"])


def push_dashboards(url: str, token: str, dashboards: Sequence[tuple[Path, dict[str, Any]]],
                    *, folder: str | None = None, timeout_s: float = 10.0,
                    message: str = "crowdwatch dashboards push") -> PushReport:
    """Create or overwrite every dashboard (matched by ``uid``) in ``folder`` (by title,
    created when missing; None: the root/General folder). Raises :class:`GrafanaError` when
    Grafana is unreachable or refuses the token (nothing pushed after that); a dashboard it
    rejects (e.g. 412) is reported in the result and the others are still pushed."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    base = _base(url)
    where = redact(base)
    if not token:
        raise GrafanaError("no Grafana token (--token or CROWDWATCH_GRAFANA_TOKEN)",
                           exit_code=EXIT_USAGE)
    api = GrafanaApi.from_url(base, credential=token, timeout=timeout_s)
    try:
        try:
            health = api.health.check()  # GET /api/frontend/settings: address and token
        except (GrafanaException, OSError) as exc:
            raise _explain(exc, f"Grafana at {where}") from None
        version = str((health or {}).get("version", "?")) if isinstance(health, dict) else "?"
        uid = _ensure_folder(api, folder, where) if folder else None
        results: list[PushResult] = []
        for path, model in dashboards:
            body = dict(model)
            body["id"] = None  # ids are per Grafana instance; the uid identifies it
            payload: dict[str, Any] = {"dashboard": body, "overwrite": True,
                                       "message": message}
            if uid is not None:
                payload["folderUid"] = uid
            title = str(body.get("title"))
            try:
                answer = api.dashboard.update_dashboard(payload)
            except (GrafanaException, OSError) as exc:
                error = _explain(exc, f"{path.name} ({title})")
                if error.exit_code in (EXIT_AUTH, EXIT_UNREACHABLE):
                    raise error from None
                results.append(PushResult(path, title, str(body.get("uid") or ""), False,
                                          error=str(error)))
                continue
            answer = answer if isinstance(answer, dict) else {}
            results.append(PushResult(
                path, title, str(answer.get("uid") or body.get("uid") or ""), True,
                url=where + str(answer.get("url") or ""),
                version=answer.get("version") if isinstance(answer.get("version"), int)
                else None))
        return PushReport(version, uid, results)
    finally:
        session = getattr(api.client, "s", None)
        if session is not None:
            session.close()
