"""Local stand-ins for Jetstream (v1 and v2) and a Mastodon streaming server, on 127.0.0.1,
and synthetic Jetstream traffic: for tests, the ingest benchmark and offline trials.

    python -m streams.ingest.fakes jetstream --frames 200000 --port 6080

serves ``ws://127.0.0.1:6080/subscribe`` (v1) and
``ws://127.0.0.1:6080/xrpc/network.bsky.jetstream.subscribeEvents`` (v2) with the same
synthetic events. Like Jetstream, a ``cursor`` query parameter replays from that time (v1:
unix microseconds) or sequence number (v2; values >= 1e15 are times); without one the fake
replays from its first event (the real one starts at the live tip). After the last event
the connection stays open (a quiet live tail) until the client or the server closes it.
Everything synthetic: fictitious dids and handles (``*.bsky.test``), no real people.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import WSCloseCode, web

V2_PREFIX = "network.bsky.jetstream.subscribeEvents#"


@dataclass(frozen=True, slots=True)
class FakeEvent:
    """One frame the fake serves: its time (us) and seq decide where a cursor resumes."""

    time_us: int
    seq: int
    v1: str | bytes
    v2: str | bytes


def events_from_frames(frames: Sequence[str | bytes], protocol: str = "v1",
                       start_us: int = 1_800_000_000_000_000) -> list[FakeEvent]:
    """Wrap ready-made frames (e.g. fixture files); frames without a readable time or seq
    (malformed ones) sit 1 us after the frame before them."""
    out: list[FakeEvent] = []
    time_us, seq = start_us, 0
    for frame in frames:
        t, s = _position(frame, protocol)
        time_us = t if t is not None else time_us + 1
        seq = s if s is not None else seq + 1
        out.append(FakeEvent(time_us, seq, frame, frame))
    return out


def _position(frame: str | bytes, protocol: str) -> tuple[int | None, int | None]:
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    if protocol == "v1":
        t = obj.get("time_us")
        return (t if isinstance(t, int) else None), None
    payload = obj.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("seq"), int):
        return None, None
    when = payload.get("witnessedAt") or payload.get("time")
    try:
        t_us = _us(datetime.fromisoformat(when)) if isinstance(when, str) else None
    except ValueError:
        t_us = None
    return t_us, payload["seq"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _iso_us(time_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=time_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- synthetic traffic

_NL = [
    "Wat een drukte op de Dam, #koningsdag is begonnen",
    "Vrijmarkt in de Jordaan loopt helemaal vol",
    "Tram 2 rijdt niet, iemand enig idee waarom?",
    "Oranje boten overal op de grachten 🧡",
    "Het Museumplein is afgesloten volgens de politie",
    "Mooi weer, gezellig op straat met de buren",
    "Veel te druk bij Centraal Station, niet te doen",
    "Is het waar dat de Dam wordt ontruimd?",
]
_EN = [
    "Huge crowds at Dam Square for King's Day",
    "Canal parade is amazing, orange everywhere #kingsday",
    "Trams not running near Museumplein, walk instead",
    "Is it true they are closing the centre?",
    "Best street market in the Jordaan today",
]


def synthetic_events(n: int, *, seed: int = 1, start_us: int = 1_808_813_700_000_000,
                     step_us: int = 500, accounts: int = 5000,
                     protocols: Sequence[str] = ("v1", "v2")) -> list[FakeEvent]:
    """``n`` Jetstream events with a firehose-like mix (likes ~55 %, posts ~18 % of which a
    third replies and some quotes, reposts ~12 %, follows ~9 %, deletes ~4 %, identity ~2 %),
    deterministic for a seed. Both wire forms are built (or the ones asked for)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    dids = [f"did:plc:synth{i:019d}" for i in range(accounts)]
    posts: list[str] = []
    out: list[FakeEvent] = []
    for i in range(n):
        t = start_us + i * step_us
        seq = i + 1
        did = dids[rng.randrange(accounts)]
        rkey = f"3l{i:011d}"
        rev = f"3r{i:011d}"
        roll = rng.random()
        kind = "commit"
        commit: dict[str, Any] | None = None
        extra: dict[str, Any] = {}
        created = _iso_us(t - rng.randrange(0, 3_000_000))[:23] + "Z"
        if roll < 0.18 or not posts:
            nl = rng.random() < 0.6
            record: dict[str, Any] = {"$type": "app.bsky.feed.post",
                                      "text": rng.choice(_NL if nl else _EN),
                                      "createdAt": created, "langs": ["nl" if nl else "en"]}
            if posts and rng.random() < 0.33:
                parent = rng.choice(posts[-500:])
                record["reply"] = {"root": {"uri": parent, "cid": "bafyreisynthroot"},
                                   "parent": {"uri": parent, "cid": "bafyreisynthparent"}}
            elif posts and rng.random() < 0.1:
                record["embed"] = {"$type": "app.bsky.embed.record",
                                   "record": {"uri": rng.choice(posts[-500:]),
                                              "cid": "bafyreisynthquote"}}
            commit = {"rev": rev, "operation": "create", "collection": "app.bsky.feed.post",
                      "rkey": rkey, "record": record, "cid": f"bafyreisynth{i:012d}"}
            posts.append(f"at://{did}/app.bsky.feed.post/{rkey}")
        elif roll < 0.73:
            commit = {"rev": rev, "operation": "create", "collection": "app.bsky.feed.like",
                      "rkey": rkey, "cid": f"bafyreisynth{i:012d}",
                      "record": {"$type": "app.bsky.feed.like", "createdAt": created,
                                 "subject": {"uri": rng.choice(posts[-2000:]),
                                             "cid": "bafyreisynthsubject"}}}
        elif roll < 0.85:
            commit = {"rev": rev, "operation": "create", "collection": "app.bsky.feed.repost",
                      "rkey": rkey, "cid": f"bafyreisynth{i:012d}",
                      "record": {"$type": "app.bsky.feed.repost", "createdAt": created,
                                 "subject": {"uri": rng.choice(posts[-2000:]),
                                             "cid": "bafyreisynthsubject"}}}
        elif roll < 0.94:
            commit = {"rev": rev, "operation": "create", "collection": "app.bsky.graph.follow",
                      "rkey": rkey, "cid": f"bafyreisynth{i:012d}",
                      "record": {"$type": "app.bsky.graph.follow", "createdAt": created,
                                 "subject": dids[rng.randrange(accounts)]}}
        elif roll < 0.98:
            victim = rng.choice(posts[-2000:])
            vdid, _, vrkey = victim[5:].partition("/app.bsky.feed.post/")
            did = vdid
            commit = {"rev": rev, "operation": "delete", "collection": "app.bsky.feed.post",
                      "rkey": vrkey}
        else:
            kind = "identity"
            extra = {"did": did, "handle": f"synth-{did[-6:]}.bsky.test",
                     "seq": 9_000_000 + i, "time": _iso_us(t)}
        v1: dict[str, Any] = {"did": did, "time_us": t, "kind": kind}
        if commit is not None:
            v1["commit"] = commit
        else:
            v1["identity"] = extra
        v1_text = json.dumps(v1, ensure_ascii=False, separators=(",", ":")) \
            if "v1" in protocols else ""
        v2_text = ""
        if "v2" in protocols:
            payload: dict[str, Any] = {"$type": V2_PREFIX + kind, "seq": seq, "did": did,
                                       "time": _iso_us(t), "witnessedAt": _iso_us(t)}
            if commit is not None:
                payload.update(commit)
            else:
                payload["identity"] = extra
            v2_text = json.dumps({"$type": "message", "payload": payload}, ensure_ascii=False,
                                 separators=(",", ":"))
        out.append(FakeEvent(t, seq, v1_text, v2_text))
    return out


# ---------------------------------------------------------------- Jetstream


@dataclass
class FakeJetstream:
    """A Jetstream on 127.0.0.1 serving ``events``.

    ``stop_after``: on the first connection, after that many frames, set :attr:`paused` and
    send nothing more (the test then stops the server "mid-stream"). ``cut_after``: close
    each connection after that many frames (a flaky network). ``dictionary``: serve zstd
    frames (binary messages) when the client asks with ``compress=true`` (v1) or
    ``zstdDictionary`` (v2); frames given as bytes are always sent as they are (binary)."""

    events: Sequence[FakeEvent]
    port: int = 0
    stop_after: int | None = None
    cut_after: int | None = None
    dictionary: bytes | None = None
    status: int | None = None  # refuse the handshake with this HTTP status
    handles: dict[str, str] = field(default_factory=dict)  # resolveHandle answers
    connections: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self.paused = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._compressed: dict[tuple[str, int], bytes] = {}

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/subscribe", self._v1)
        app.router.add_get("/xrpc/network.bsky.jetstream.subscribeEvents", self._v2)
        app.router.add_get("/xrpc/com.atproto.identity.resolveHandle", self._resolve)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        return self.url

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _resolve(self, request: web.Request) -> web.Response:
        did = self.handles.get(request.query.get("handle", ""))
        if did is None:
            return web.json_response({"error": "InvalidRequest",
                                      "message": "Unable to resolve handle"}, status=400)
        return web.json_response({"did": did})

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "v1")

    async def _v2(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "v2")

    def _start_index(self, protocol: str, cursor: str | None) -> int:
        if cursor is None:
            return 0
        value = int(cursor)
        if protocol == "v2" and value < 10**15:
            return next((i for i, e in enumerate(self.events) if e.seq >= value),
                        len(self.events))
        return next((i for i, e in enumerate(self.events) if e.time_us >= value),
                    len(self.events))

    async def _serve(self, request: web.Request, protocol: str) -> web.StreamResponse:
        self.connections.append({"protocol": protocol, "query": list(request.query.items()),
                                 "subprotocol": request.headers.get("Sec-WebSocket-Protocol")})
        if self.status is not None:
            return web.json_response({"error": "InvalidRequest", "message": "refused"},
                                     status=self.status)
        ws = web.WebSocketResponse(protocols=("xrpc.v1.json",) if protocol == "v2" else (),
                                   compress=False, heartbeat=None)
        await ws.prepare(request)
        self._sockets.add(ws)
        compress = self.dictionary is not None and (
            request.query.get("compress") == "true" or "zstdDictionary" in request.query)
        cctx = None
        if compress:
            import zstandard

            cctx = zstandard.ZstdCompressor(
                dict_data=zstandard.ZstdCompressionDict(self.dictionary or b""))
        first = len(self.connections) == 1
        sent_here = 0
        try:
            for event in self.events[self._start_index(protocol, request.query.get("cursor")):]:
                if first and self.stop_after is not None and sent_here >= self.stop_after:
                    self.paused.set()
                    break
                if self.cut_after is not None and sent_here >= self.cut_after:
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"cut")
                    return ws
                frame = event.v1 if protocol == "v1" else event.v2
                if cctx is not None and isinstance(frame, str):
                    await ws.send_bytes(cctx.compress(frame.encode("utf-8")))
                elif isinstance(frame, bytes):  # sent as they are (also when compressing)
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                sent_here += 1
                self.sent += 1
            async for _ in ws:  # a quiet live tail: hold until either side closes
                pass
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._sockets.discard(ws)
        return ws


# ---------------------------------------------------------------- Mastodon


@dataclass
class FakeMastodon:
    """A Mastodon streaming API on 127.0.0.1: ``events`` as (event, data) server-sent events
    on every stream (``tag_events`` per hashtag for the hashtag streams), a heartbeat comment
    first, then held open. Refuses requests without ``Authorization: Bearer <token>``
    (401). ``cut_after``: close each connection after that many events."""

    events: Sequence[tuple[str, str]]
    token: str = "synthetic-token"  # noqa: S105 - a test stand-in's expected token
    port: int = 0
    tag_events: dict[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    cut_after: int | None = None
    connections: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        app = web.Application()
        for path in ("public", "public/local", "public/remote", "hashtag", "hashtag/local"):
            app.router.add_get(f"/api/v1/streaming/{path}", self._stream)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            sockets = getattr(site._server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        self._closing.clear()
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.connections.append({"path": request.path, "query": list(request.query.items()),
                                 "auth": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "Error: Missing access token"}, status=401)
        tag = request.query.get("tag")
        events = self.tag_events.get(tag or "", self.events) if tag else self.events
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        await resp.write(b":)\n")
        try:
            for i, (event, data) in enumerate(events):
                if self.cut_after is not None and i >= self.cut_after:
                    return resp
                await resp.write(f"event: {event}\ndata: {data}\n\n".encode())
            await resp.write(b":thump\n")
            await self._closing.wait()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp


# ---------------------------------------------------------------- command line


async def _serve_jetstream(args: argparse.Namespace) -> None:
    protocols = ("v1", "v2") if args.protocol == "both" else (args.protocol,)
    events = synthetic_events(args.frames, seed=args.seed, protocols=protocols)
    fake = FakeJetstream(events, port=args.port)
    url = await fake.start()
    print(f"READY {url} {len(events)}", flush=True)  # noqa: T201 - the benchmark reads it
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.ingest.fakes")
    sub = parser.add_subparsers(dest="what", required=True)
    js = sub.add_parser("jetstream", help="serve synthetic Jetstream frames")
    js.add_argument("--frames", type=int, default=10_000)
    js.add_argument("--port", type=int, default=0)
    js.add_argument("--seed", type=int, default=1)
    js.add_argument("--protocol", choices=("v1", "v2", "both"), default="both",
                    help="which wire forms to build (one is faster for large --frames)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_jetstream(args))


if __name__ == "__main__":
    main()
