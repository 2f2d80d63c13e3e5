"""``crowdwatch ingest bluesky``: Bluesky Jetstream (v1 ``/subscribe`` or v2
``subscribeEvents``) over a websocket, into ``posts.raw`` or a JSON Lines file.

Resume: the pipeline's cursor is the event time (``time_us``, v1) and the sequence number
(``seq``, v2) of the last event handled. A reconnect (and a restart, from the cursor file)
asks for ``cursor = time_us - margin`` (v1, and v2 on another instance: a timestamp cursor)
or ``cursor = seq`` (v2 on the same instance: inclusive); replays are dropped by event key
(and by seq), so nothing is produced twice and nothing between is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from models.firehose import (
    BLUESKY_COLLECTIONS,
    FrameReject,
    Mapped,
    map_jetstream_frame,
)
from streams.ingest.common import (
    Connector,
    IngestError,
    IngestSettings,
    Pipeline,
    close_on_stop,
)

log = logging.getLogger(__name__)

V1_PATH = "/subscribe"
V2_PATH = "/xrpc/network.bsky.jetstream.subscribeEvents"
V2_SUBPROTOCOL = "xrpc.v1.json"
ZSTD_DICT_MAGIC = b"\x37\xa4\x30\xec"  # 0xEC30A437 little-endian (RFC 8878 section 5)
TIMESTAMP_CURSOR_MIN = 10**15  # v2: cursors at or above this are unix microseconds


@dataclass(frozen=True)
class JetstreamOptions:
    endpoint: str
    protocol: str = "v1"  # v1 | v2
    collections: tuple[str, ...] = BLUESKY_COLLECTIONS
    only_accounts: bool = False  # ask the server for the watched accounts' repos only
    compress: bool = False
    dictionary: bytes | None = None
    start_cursor: int | None = None  # unix microseconds; overrides the cursor file
    resolve_handles: bool = True
    appview: str = "https://public.api.bsky.app"


def dictionary_id(data: bytes) -> int | None:
    """The id of a structured zstd dictionary (None for a raw-content one)."""
    if len(data) >= 8 and data[:4] == ZSTD_DICT_MAGIC:
        return int.from_bytes(data[4:8], "little")
    return None


class ZstdFrames:
    """Decompresses Jetstream's zstd frames (each message one frame, custom dictionary)."""

    def __init__(self, dictionary: bytes, max_output: int) -> None:
        import zstandard

        self._zstd = zstandard
        self.dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
        self.max_output = max_output

    def decompress(self, data: bytes) -> bytes | FrameReject:
        try:
            return bytes(self.dctx.decompress(data, max_output_size=self.max_output))
        except self._zstd.ZstdError as exc:
            try:  # frames without a content size in their header
                out = self.dctx.decompressobj().decompress(data)
                if out:
                    return bytes(out)
            except self._zstd.ZstdError:
                pass
            return FrameReject("decompress_failed", str(exc)[:200])


def to_ws_url(endpoint: str) -> str:
    parts = urlsplit(endpoint.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise IngestError(f"--endpoint {endpoint!r}: expected ws://, wss://, http:// or https://")
    if not parts.netloc:
        raise IngestError(f"--endpoint {endpoint!r}: no host")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


class JetstreamConnector(Connector):
    source = "bluesky"

    def __init__(self, pipeline: Pipeline, ingest: IngestSettings,
                 options: JetstreamOptions) -> None:
        super().__init__(pipeline, ingest)
        if options.protocol not in ("v1", "v2"):
            raise IngestError(f"unknown Jetstream protocol {options.protocol!r} (v1 or v2)")
        self.options = options
        self.base_url = to_ws_url(options.endpoint)
        self.zstd: ZstdFrames | None = None
        self.dict_id: int | None = None
        if options.compress:
            if options.dictionary is None:
                raise IngestError(
                    "--compress needs --zstd-dictionary PATH: Jetstream compresses with a custom "
                    "zstd dictionary (v1: the zstd_dictionary file of the Jetstream repository; "
                    "v2: network.bsky.jetstream.getZstdDictionary)")
            self.dict_id = dictionary_id(options.dictionary)
            if options.protocol == "v2" and self.dict_id is None:
                raise IngestError("--compress with --protocol v2 needs a structured zstd "
                                  "dictionary (with an id header); this one has none")
            self.zstd = ZstdFrames(options.dictionary, ingest.max_frame_bytes)
        self._session: aiohttp.ClientSession | None = None
        self._cursor_kind = "seq"  # v2: how to resume ("seq", "time" or "none")
        self.server_dids: tuple[str, ...] = ()

    # -- url

    def url(self) -> str:
        opts = self.options
        parts = urlsplit(self.base_url)
        path = parts.path if parts.path not in ("", "/") else (
            V1_PATH if opts.protocol == "v1" else V2_PATH)
        params: list[tuple[str, str]] = []
        p = self.pipeline
        if opts.protocol == "v1":
            params += [("wantedCollections", c) for c in opts.collections]
            params += [("wantedDids", d) for d in self.server_dids]
            cursor = self._time_cursor()
            if cursor is not None:
                params.append(("cursor", str(cursor)))
            if opts.compress:
                params.append(("compress", "true"))
        else:
            params += [("kinds", "commit"), ("kinds", "identity")]
            params += [("collections", c) for c in opts.collections]
            params += [("dids", d) for d in self.server_dids]
            cursor = None
            if self._cursor_kind == "seq" and p.seq is not None:
                cursor = p.seq  # inclusive: the last event comes again and is dropped
            elif self._cursor_kind != "none":
                cursor = self._time_cursor()
                if cursor is not None:
                    cursor = max(cursor, TIMESTAMP_CURSOR_MIN)
            if cursor is not None:
                params.append(("cursor", str(cursor)))
            if opts.compress and self.dict_id is not None:
                params.append(("zstdDictionary", str(self.dict_id)))
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit((parts.scheme, parts.netloc, path, query, ""))

    def _time_cursor(self) -> int | None:
        p = self.pipeline
        if p.time_us is None:
            return self.options.start_cursor
        return max(1, p.time_us - p.margin_us)

    # -- lifecycle

    async def setup(self) -> None:
        self._session = aiohttp.ClientSession()
        pipeline = self.pipeline
        if self.options.start_cursor is not None:  # an explicit --cursor wins over the file
            pipeline.time_us = None
            pipeline.seq = None
        handles = sorted(a for a in pipeline.filter.accounts if not a.startswith("did:"))
        if handles and self.options.resolve_handles:
            resolved = await resolve_handles(self.options.appview, handles)
            for handle, did in resolved.items():
                pipeline.handles.put(did, handle)
            pipeline.filter = pipeline.filter.with_accounts(resolved.values())
        if self.options.only_accounts:
            self.server_dids = tuple(sorted(a for a in pipeline.filter.accounts
                                            if a.startswith("did:")))
            if not self.server_dids:
                raise IngestError("--only-accounts: no watched account has a known did "
                                  "(give dids, or let handles resolve through --appview)")

    async def teardown(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def connect_once(self, stop: asyncio.Event) -> int:
        if self._session is None:
            raise RuntimeError("setup() was not called")
        url = self.url()
        log.info("bluesky: connecting to %s", url)
        protocols = (V2_SUBPROTOCOL,) if self.options.protocol == "v2" else ()
        try:
            ws = await self._session.ws_connect(
                url, protocols=protocols, heartbeat=30.0, autoping=True,
                max_msg_size=self.ingest.max_frame_bytes,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0))
        except aiohttp.WSServerHandshakeError as exc:
            self._handshake_failed(exc)
            return 0
        self.pipeline.metrics.connected_g.set(1)
        closer = asyncio.create_task(close_on_stop(stop, ws.close))
        try:
            return await self._consume(ws)
        finally:
            closer.cancel()
            await ws.close()

    def _handshake_failed(self, exc: aiohttp.WSServerHandshakeError) -> None:
        status = exc.status
        if status == 400 and self.options.protocol == "v2" and self._cursor_kind == "seq" \
                and self.pipeline.seq is not None:
            log.warning("bluesky: the server refused seq cursor %s (400, CursorTooOld or another "
                        "instance): resuming by time instead", self.pipeline.seq)
            self._cursor_kind = "time"
            return
        if status == 400 and self.pipeline.time_us is not None and self._cursor_kind != "none":
            log.error("bluesky: the server refused the cursor (400): resuming at the live tip; "
                      "events since the cursor are missing")
            self._cursor_kind = "none"
            self.pipeline.time_us = None
            self.pipeline.seq = None
            return
        if status in (400, 401, 403, 404, 410):
            raise IngestError(f"Jetstream at {self.base_url} refused the subscription "
                              f"({status} {exc.message}): check --endpoint, --protocol and the "
                              "filters")
        log.warning("bluesky: handshake failed (%s %s)", status, exc.message)

    async def _consume(self, ws: aiohttp.ClientWebSocketResponse) -> int:
        pipeline = self.pipeline
        handles = pipeline.handles
        zstd = self.zstd
        process = pipeline.process
        text_t, binary_t = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        handled = 0
        while True:
            # no receive timeout: a filtered stream may be quiet for long; the heartbeat
            # (a ping every 30 s, closed when the pong does not come) finds dead connections
            msg = await ws.receive()
            mtype = msg.type
            data: Any
            if mtype is text_t:
                data = msg.data
            elif mtype is binary_t:
                data = msg.data
                if zstd is not None:
                    inflated = zstd.decompress(data)
                    if isinstance(inflated, FrameReject):
                        await process(inflated, data)
                        handled += 1
                        continue
                    data = inflated
            elif mtype in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                           aiohttp.WSMsgType.CLOSED):
                return handled
            elif mtype is aiohttp.WSMsgType.ERROR:
                log.warning("bluesky: websocket error: %s", ws.exception())
                return handled
            else:
                continue
            result = map_jetstream_frame(data, handles)
            if isinstance(result, Mapped) and result.control in ("error", "info"):
                log.warning("bluesky: server %s frame: %s", result.control, result.detail)
            await process(result, data)
            handled += 1


async def resolve_handles(appview: str, handles: list[str], limit_s: float = 10.0
                          ) -> dict[str, str]:
    """handle -> did through ``com.atproto.identity.resolveHandle`` (failures logged)."""
    out: dict[str, str] = {}
    if not handles:
        return out
    url = appview.rstrip("/") + "/xrpc/com.atproto.identity.resolveHandle"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s)) as session:
        for handle in handles:
            try:
                async with session.get(url, params={"handle": handle}) as resp:
                    body = await resp.json(content_type=None)
                    did = body.get("did") if isinstance(body, dict) else None
                    if resp.status == 200 and isinstance(did, str) and did.startswith("did:"):
                        out[handle] = did
                    else:
                        log.warning("bluesky: cannot resolve handle %s (%s)", handle, resp.status)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("bluesky: cannot resolve handle %s: %s", handle, exc)
    return out
