"""Current state of an event (counts per area/topic/keyword/lang), idempotent by post id.

``StateStore`` is the interface; :class:`RedisStore` is the real one and
:class:`MemoryStore` serves the embedded demo and unit tests. ``record_batch``
marks post ids as seen and counts only posts not seen before, atomically (one
Lua script per batch in Redis), so re-delivered posts never double-count.

Redis keys (``{e}`` = event name, ``cw`` = ``CROWDWATCH_REDIS_PREFIX``):
- ``cw:{e}:seen:{post_id}``            dedupe marker, TTL ``dedupe_ttl_s``
- ``cw:{e}:counts``                    hash of totals; fields ``posts``, ``lang:<code>``,
                                       ``area:<name>``, ``topic:<name>``, ``keyword:<term>``
- ``cw:{e}:<stage>:seen:{post_id}``    dedupe marker of a later stage (e.g. ``mood``)
- ``cw:{e}:minute:<YYYYMMDDHHMM>``     same fields per minute of ``created_at`` (TTL 48 h)
- ``cw:{e}:cluster:{cluster_id}``       JSON snapshot of a claim cluster (summary, sample
                                       posts, counts, velocity, top terms, pseudonymised top
                                       spreaders), TTL ``CROWDWATCH_RUMOUR_STATE_TTL_S``
- ``cw:{e}:clusters``                  sorted set cluster id -> rumour score (index of the
                                       snapshots; members whose snapshot expired are pruned
                                       on read)
- ``cw:{e}:<kind>``                    hash id -> JSON document: ``officials`` (accounts
                                       added with ``crowdwatch official``), ``rebuttal_links``,
                                       ``rebuttal_suggestions``, ``official_posts`` (reach),
                                       ``races``, ``webcare`` (questions to officials)
- ``cw:{e}:reach:<post_id>:accounts``  HyperLogLog of accounts engaging with an official post
- ``cw:{e}:state``                     marker set once per Redis lifetime: when it is missing,
                                       Redis lost its data (restart without persistence, flush,
                                       eviction) and the worker rebuilds the counts from Kafka
                                       (``streams.rebuild``)

:class:`RetryingStore` wraps a store for the agents: while Redis is unreachable a write is
retried with back-off (the batch waits, nothing is acknowledged, nothing is lost) instead of
crashing the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from models.enrich import PostSummary
from models.jsonio import dumps

log = logging.getLogger(__name__)

MINUTE_TTL_S = 48 * 3600


def parse_counts(raw: dict[str, int]) -> dict[str, Any]:
    """Hash fields -> {"posts": n, "area": {..}, "topic": {..}, "keyword": {..}, "lang": {..}}."""
    out: dict[str, Any] = {"posts": 0, "area": {}, "topic": {}, "keyword": {}, "lang": {},
                           "kind": {}}
    for field, value in raw.items():
        if field == "posts":
            out["posts"] = int(value)
            continue
        kind, _, name = field.partition(":")
        if kind in out and isinstance(out[kind], dict):
            out[kind][name] = int(value)
    for kind in ("area", "topic", "keyword", "lang", "kind"):
        out[kind] = dict(sorted(out[kind].items(), key=lambda kv: (-kv[1], kv[0])))
    return out


class StateStore(Protocol):
    async def record_batch(self, event: str, posts: Sequence[PostSummary]) -> list[bool]:
        """Count posts not seen before; return per post True if it was new."""
        ...

    async def counts(self, event: str) -> dict[str, Any]:
        """Totals since the start of the event (see :func:`parse_counts`)."""
        ...

    async def recent_counts(self, event: str, minutes: int, now: datetime | None = None
                            ) -> dict[str, Any]:
        """Counts over the last ``minutes`` minute buckets ending at ``now`` (UTC)."""
        ...

    async def first_seen(self, event: str, stage: str, ids: Sequence[str]) -> list[bool]:
        """Mark ``ids`` as seen by ``stage``; True for each id not seen by it before."""
        ...

    async def put_clusters(self, event: str, snapshots: Sequence[dict[str, Any]],
                           ttl_s: int) -> None:
        """Store cluster snapshots (``id`` and ``rumour_score`` keys required) with a TTL."""
        ...

    async def drop_clusters(self, event: str, ids: Sequence[str]) -> None: ...

    async def top_clusters(self, event: str, n: int) -> list[dict[str, Any]]:
        """The ``n`` current clusters with the highest rumour score (then size)."""
        ...

    async def put_docs(self, event: str, kind: str, docs: Mapping[str, Any],
                       ttl_s: int | None = None) -> None:
        """Store JSON documents by id in the collection ``kind`` (one TTL for the whole
        collection, refreshed on every write; None keeps them)."""
        ...

    async def get_docs(self, event: str, kind: str) -> dict[str, Any]: ...

    async def del_docs(self, event: str, kind: str, ids: Sequence[str]) -> None: ...

    async def add_distinct(self, event: str, key: str, members: Sequence[str],
                           ttl_s: int) -> None:
        """Add to a HyperLogLog (distinct counts, ~0.8 % error, 12 KB per key)."""
        ...

    async def count_distinct(self, event: str, key: str) -> int: ...

    async def claim_state(self, event: str) -> bool:
        """Set the event's state marker; True when it was missing (a fresh or wiped store:
        the caller rebuilds what the store lost)."""
        ...

    async def release_state(self, event: str) -> None:
        """Remove the marker again (a rebuild failed: the next check retries it)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def _minute_keys(minutes: int, now: datetime | None) -> list[str]:
    end = (now or datetime.now(UTC)).astimezone(UTC)
    return [(end - timedelta(minutes=i)).strftime("%Y%m%d%H%M") for i in range(minutes)]


def rank_clusters(snapshots: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return sorted(snapshots, key=lambda c: (-float(c.get("rumour_score", 0.0)),
                                            -int(c.get("size", 0)), str(c.get("id"))))[:n]


class MemoryStore:
    """In-process store for the demo and tests; dedupe window bounded by ``max_ids``."""

    def __init__(self, max_ids: int = 2_000_000) -> None:
        self._clusters: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}
        self._docs: dict[tuple[str, str], dict[str, Any]] = {}
        self._distinct: dict[tuple[str, str], set[str]] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._max_ids = max_ids
        self._totals: dict[str, Counter[str]] = {}
        self._minutes: dict[tuple[str, str], Counter[str]] = {}
        self._claimed: set[str] = set()

    async def record_batch(self, event: str, posts: Sequence[PostSummary]) -> list[bool]:
        fresh = []
        totals = self._totals.setdefault(event, Counter())
        for post in posts:
            key = (event, post.id)
            if key in self._seen:
                fresh.append(False)
                continue
            self._seen[key] = None
            if len(self._seen) > self._max_ids:
                self._seen.popitem(last=False)
            fields = post.count_fields()
            totals.update(fields)
            self._minutes.setdefault((event, post.minute), Counter()).update(fields)
            fresh.append(True)
        return fresh

    async def counts(self, event: str) -> dict[str, Any]:
        return parse_counts(dict(self._totals.get(event, Counter())))

    async def recent_counts(self, event: str, minutes: int, now: datetime | None = None
                            ) -> dict[str, Any]:
        total: Counter[str] = Counter()
        for key in _minute_keys(minutes, now):
            total.update(self._minutes.get((event, key), Counter()))
        return parse_counts(dict(total))

    async def first_seen(self, event: str, stage: str, ids: Sequence[str]) -> list[bool]:
        out = []
        for pid in ids:
            key = (f"{event}/{stage}", pid)
            if key in self._seen:
                out.append(False)
                continue
            self._seen[key] = None
            if len(self._seen) > self._max_ids:
                self._seen.popitem(last=False)
            out.append(True)
        return out

    async def put_clusters(self, event: str, snapshots: Sequence[dict[str, Any]],
                           ttl_s: int) -> None:
        now = time.time()
        table = self._clusters.setdefault(event, {})
        for snap in snapshots:
            table[str(snap["id"])] = (now + ttl_s, dict(snap))

    async def drop_clusters(self, event: str, ids: Sequence[str]) -> None:
        table = self._clusters.get(event, {})
        for cid in ids:
            table.pop(cid, None)

    async def top_clusters(self, event: str, n: int) -> list[dict[str, Any]]:
        now = time.time()
        table = self._clusters.get(event, {})
        for cid in [k for k, (exp, _) in table.items() if exp <= now]:
            del table[cid]
        return rank_clusters([snap for _, snap in table.values()], n)

    async def put_docs(self, event: str, kind: str, docs: Mapping[str, Any],
                       ttl_s: int | None = None) -> None:
        self._docs.setdefault((event, kind), {}).update(
            {k: json.loads(json.dumps(v)) for k, v in docs.items()})

    async def get_docs(self, event: str, kind: str) -> dict[str, Any]:
        return dict(self._docs.get((event, kind), {}))

    async def del_docs(self, event: str, kind: str, ids: Sequence[str]) -> None:
        table = self._docs.get((event, kind), {})
        for i in ids:
            table.pop(i, None)

    async def add_distinct(self, event: str, key: str, members: Sequence[str],
                           ttl_s: int) -> None:
        self._distinct.setdefault((event, key), set()).update(members)

    async def count_distinct(self, event: str, key: str) -> int:
        return len(self._distinct.get((event, key), ()))

    async def claim_state(self, event: str) -> bool:
        if event in self._claimed:
            return False
        self._claimed.add(event)
        return True

    async def release_state(self, event: str) -> None:
        self._claimed.discard(event)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


# KEYS: seen-prefix, totals-hash ; ARGV: dedupe_ttl, minute_ttl, minute-prefix, n, then per post:
# id, minute, nfields, fields...
_RECORD_LUA = """
local seen_prefix = KEYS[1]
local totals = KEYS[2]
local ttl = tonumber(ARGV[1])
local minute_ttl = tonumber(ARGV[2])
local minute_prefix = ARGV[3]
local n = tonumber(ARGV[4])
local i = 5
local out = {}
for p = 1, n do
  local id = ARGV[i]
  local minute = ARGV[i + 1]
  local nf = tonumber(ARGV[i + 2])
  local fresh = redis.call('SET', seen_prefix .. id, '1', 'NX', 'EX', ttl)
  if fresh then
    local mkey = minute_prefix .. minute
    for f = 1, nf do
      local field = ARGV[i + 2 + f]
      redis.call('HINCRBY', totals, field, 1)
      redis.call('HINCRBY', mkey, field, 1)
    end
    redis.call('EXPIRE', mkey, minute_ttl)
    out[p] = 1
  else
    out[p] = 0
  end
  i = i + 3 + nf
end
return out
"""


class RedisStore:
    """State in Redis; one atomic Lua call per batch."""

    def __init__(self, url: str, *, dedupe_ttl_s: int = 7 * 24 * 3600, prefix: str = "cw",
                 client_kwargs: Mapping[str, Any] | None = None) -> None:
        """``client_kwargs``: more ``from_url`` arguments (the TLS files of a rediss:// URL,
        :meth:`Settings.redis_client_kwargs`)."""
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, decode_responses=True,
                                              **dict(client_kwargs or {}))
        self._ttl = dedupe_ttl_s
        self._key_prefix = prefix
        self._script = self._redis.register_script(_RECORD_LUA)

    def _prefix(self, event: str) -> str:
        return f"{self._key_prefix}:{event}:"

    async def record_batch(self, event: str, posts: Sequence[PostSummary]) -> list[bool]:
        if not posts:
            return []
        prefix = self._prefix(event)
        args: list[Any] = [self._ttl, MINUTE_TTL_S, prefix + "minute:", len(posts)]
        for post in posts:
            fields = post.count_fields()
            args += [post.id, post.minute, len(fields), *fields]
        result = await self._script(keys=[prefix + "seen:", prefix + "counts"], args=args)
        return [bool(x) for x in result]

    async def counts(self, event: str) -> dict[str, Any]:
        raw = await self._redis.hgetall(self._prefix(event) + "counts")
        return parse_counts({str(k): int(v) for k, v in raw.items()})

    async def recent_counts(self, event: str, minutes: int, now: datetime | None = None
                            ) -> dict[str, Any]:
        prefix = self._prefix(event) + "minute:"
        pipe = self._redis.pipeline(transaction=False)
        for key in _minute_keys(minutes, now):
            pipe.hgetall(prefix + key)
        total: Counter[str] = Counter()
        for raw in await pipe.execute():
            total.update({k: int(v) for k, v in raw.items()})
        return parse_counts(dict(total))

    async def first_seen(self, event: str, stage: str, ids: Sequence[str]) -> list[bool]:
        if not ids:
            return []
        prefix = f"{self._prefix(event)}{stage}:seen:"
        pipe = self._redis.pipeline(transaction=False)
        for pid in ids:
            pipe.set(prefix + pid, "1", nx=True, ex=self._ttl)
        return [bool(x) for x in await pipe.execute()]

    async def put_clusters(self, event: str, snapshots: Sequence[dict[str, Any]],
                           ttl_s: int) -> None:
        if not snapshots:
            return
        prefix = self._prefix(event)
        pipe = self._redis.pipeline(transaction=False)
        for snap in snapshots:
            pipe.set(f"{prefix}cluster:{snap['id']}", dumps(snap), ex=ttl_s)
        pipe.zadd(prefix + "clusters", {str(s["id"]): float(s["rumour_score"]) for s in snapshots})
        pipe.expire(prefix + "clusters", ttl_s)
        await pipe.execute()

    async def drop_clusters(self, event: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        prefix = self._prefix(event)
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(*[f"{prefix}cluster:{cid}" for cid in ids])
        pipe.zrem(prefix + "clusters", *ids)
        await pipe.execute()

    async def top_clusters(self, event: str, n: int) -> list[dict[str, Any]]:
        prefix = self._prefix(event)
        found: list[dict[str, Any]] = []
        start = 0
        page = max(2 * n, 50)
        while len(found) < n:  # snapshots that expired leave index members behind: prune them
            ids: list[str] = [str(x) for x in await self._redis.zrevrange(
                prefix + "clusters", start, start + page - 1)]
            if not ids:
                break
            raws = await self._redis.mget([f"{prefix}cluster:{cid}" for cid in ids])
            gone: list[str] = [cid for cid, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:
                await self._redis.zrem(prefix + "clusters", *gone)
            found += [json.loads(raw) for raw in raws if raw is not None]
            start += page - len(gone)
        return rank_clusters(found, n)

    async def put_docs(self, event: str, kind: str, docs: Mapping[str, Any],
                       ttl_s: int | None = None) -> None:
        if not docs:
            return
        key = f"{self._prefix(event)}{kind}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping={k: dumps(v) for k, v in docs.items()})
        if ttl_s is not None:
            pipe.expire(key, ttl_s)
        await pipe.execute()

    async def get_docs(self, event: str, kind: str) -> dict[str, Any]:
        raw = await self._redis.hgetall(f"{self._prefix(event)}{kind}")
        return {str(k): json.loads(v) for k, v in raw.items()}

    async def del_docs(self, event: str, kind: str, ids: Sequence[str]) -> None:
        if ids:
            await self._redis.hdel(f"{self._prefix(event)}{kind}", *ids)

    async def add_distinct(self, event: str, key: str, members: Sequence[str],
                           ttl_s: int) -> None:
        if not members:
            return
        full = f"{self._prefix(event)}{key}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.pfadd(full, *members)
        pipe.expire(full, ttl_s)
        await pipe.execute()

    async def count_distinct(self, event: str, key: str) -> int:
        return int(await self._redis.pfcount(f"{self._prefix(event)}{key}"))

    async def claim_state(self, event: str) -> bool:
        return bool(await self._redis.set(self._prefix(event) + "state", "1", nx=True))

    async def release_state(self, event: str) -> None:
        await self._redis.delete(self._prefix(event) + "state")

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, OSError]
    try:
        from redis import exceptions as rexc
    except ImportError:  # pragma: no cover - redis is a dependency
        return tuple(errors)
    return (*errors, rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError,
            rexc.TryAgainError)


UNAVAILABLE = _unavailable_errors()


class RetryingStore:
    """A store whose calls wait for the server instead of failing while it is unreachable.

    Connection errors, time-outs and Redis' "loading" are retried with exponential back-off
    (``first_delay_s`` doubling up to ``max_delay_s``) until the call succeeds or
    ``stopping()`` says the process is shutting down; every failed try calls ``on_error``.
    Other errors (a bug, a wrong type) propagate at once. ``ping`` and ``close`` are passed
    through untouched, so health checks still see the outage.
    """

    def __init__(self, inner: StateStore, *, on_error: Any = None, stopping: Any = None,
                 first_delay_s: float = 0.2, max_delay_s: float = 5.0) -> None:
        self.inner = inner
        self._on_error = on_error
        self._stopping = stopping
        self._first = first_delay_s
        self._max = max_delay_s

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        delay = self._first
        tries = 0
        while True:
            try:
                return await getattr(self.inner, name)(*args, **kwargs)
            except UNAVAILABLE as exc:
                tries += 1
                if self._on_error is not None:
                    self._on_error(exc)
                if self._stopping is not None and self._stopping():
                    raise
                if tries == 1 or tries % 20 == 0:
                    log.warning(
                        "state store unavailable (%s: %s): %s waits and retries (try %d)",
                        exc.__class__.__name__, exc, name, tries)
                await asyncio.sleep(delay)
                delay = min(self._max, delay * 2)

    async def record_batch(self, event: str, posts: Sequence[PostSummary]) -> list[bool]:
        return list(await self._call("record_batch", event, posts))

    async def counts(self, event: str) -> dict[str, Any]:
        return dict(await self._call("counts", event))

    async def recent_counts(self, event: str, minutes: int, now: datetime | None = None
                            ) -> dict[str, Any]:
        return dict(await self._call("recent_counts", event, minutes, now))

    async def first_seen(self, event: str, stage: str, ids: Sequence[str]) -> list[bool]:
        return list(await self._call("first_seen", event, stage, ids))

    async def put_clusters(self, event: str, snapshots: Sequence[dict[str, Any]],
                           ttl_s: int) -> None:
        await self._call("put_clusters", event, snapshots, ttl_s)

    async def drop_clusters(self, event: str, ids: Sequence[str]) -> None:
        await self._call("drop_clusters", event, ids)

    async def top_clusters(self, event: str, n: int) -> list[dict[str, Any]]:
        return list(await self._call("top_clusters", event, n))

    async def put_docs(self, event: str, kind: str, docs: Mapping[str, Any],
                       ttl_s: int | None = None) -> None:
        await self._call("put_docs", event, kind, docs, ttl_s)

    async def get_docs(self, event: str, kind: str) -> dict[str, Any]:
        return dict(await self._call("get_docs", event, kind))

    async def del_docs(self, event: str, kind: str, ids: Sequence[str]) -> None:
        await self._call("del_docs", event, kind, ids)

    async def add_distinct(self, event: str, key: str, members: Sequence[str],
                           ttl_s: int) -> None:
        await self._call("add_distinct", event, key, members, ttl_s)

    async def count_distinct(self, event: str, key: str) -> int:
        return int(await self._call("count_distinct", event, key))

    async def claim_state(self, event: str) -> bool:
        return bool(await self._call("claim_state", event))

    async def release_state(self, event: str) -> None:
        await self._call("release_state", event)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()
