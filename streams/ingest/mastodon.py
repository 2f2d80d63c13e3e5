"""``crowdwatch ingest mastodon``: a Mastodon instance's streaming API (server-sent events)
into ``posts.raw`` or a JSON Lines file.

``GET <endpoint>/api/v1/streaming/<stream>`` with ``Authorization: Bearer <token>`` (a user
token: since Mastodon 4.2 the public streams refuse anonymous and app-only clients). One
connection per stream (``--tag`` may be repeated: one connection per tag, one shared
pipeline, so a post carrying two watched tags is produced once). The streaming API has no
cursor: what is posted while disconnected is not replayed (see docs/ingest.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from models.firehose import FrameReject, map_mastodon
from streams.ingest.common import (
    Connector,
    IngestError,
    IngestSettings,
    Pipeline,
    close_on_stop,
)

log = logging.getLogger(__name__)

STREAMS = {
    "public": "public",
    "public:local": "public/local",
    "public:remote": "public/remote",
    "hashtag": "hashtag",
    "hashtag:local": "hashtag/local",
}


@dataclass(frozen=True)
class MastodonOptions:
    instance: str  # base URL of the instance, e.g. https://mastodon.example
    token: str
    stream: str = "public"
    tags: tuple[str, ...] = ()
    endpoint: str | None = None  # streaming base URL when it differs from the instance


def base_url(url: str, what: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IngestError(f"{what} {url!r}: expected http(s)://host")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class MastodonConnector(Connector):
    source = "mastodon"

    def __init__(self, pipeline: Pipeline, ingest: IngestSettings,
                 options: MastodonOptions) -> None:
        super().__init__(pipeline, ingest)
        if options.stream not in STREAMS:
            raise IngestError(f"--stream {options.stream!r}: choose from {', '.join(STREAMS)}")
        if options.stream.startswith("hashtag") and not options.tags:
            raise IngestError(f"--stream {options.stream} needs --tag NAME")
        if not options.stream.startswith("hashtag") and options.tags:
            raise IngestError("--tag needs --stream hashtag (or hashtag:local)")
        if not options.token.strip():
            raise IngestError("a user access token is required (--token or "
                              "CROWDWATCH_INGEST_MASTODON_TOKEN): since Mastodon 4.2 the "
                              "streaming API refuses anonymous clients")
        self.options = options
        self.instance = base_url(options.instance, "--instance")
        self.streaming = base_url(options.endpoint or options.instance, "--endpoint")
        self.host = urlsplit(self.instance).netloc.lower()
        self._session: aiohttp.ClientSession | None = None

    def urls(self) -> list[str]:
        path = f"{self.streaming}/api/v1/streaming/{STREAMS[self.options.stream]}"
        if not self.options.tags:
            return [path]
        from urllib.parse import quote

        return [f"{path}?tag={quote(t.lstrip('#'))}" for t in self.options.tags]

    async def setup(self) -> None:
        self._session = aiohttp.ClientSession(headers={
            "Authorization": f"Bearer {self.options.token.strip()}",
            "Accept": "text/event-stream",
            "User-Agent": "crowdwatch-ingest",
        })

    async def teardown(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def connect_once(self, stop: asyncio.Event) -> int:
        urls = self.urls()
        if len(urls) == 1:
            return await self._stream(urls[0], stop)
        # several tags: one connection each; when one drops, all reconnect together
        local_stop = asyncio.Event()
        relay = asyncio.create_task(close_on_stop(stop, local_stop.set))
        tasks = [asyncio.create_task(self._stream(u, local_stop)) for u in urls]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            local_stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            relay.cancel()
        for r in results:
            if isinstance(r, IngestError):
                raise r
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                log.warning("mastodon: stream failed: %s", r)
        return sum(r for r in results if isinstance(r, int))

    async def _stream(self, url: str, stop: asyncio.Event) -> int:
        if self._session is None:
            raise RuntimeError("setup() was not called")
        log.info("mastodon: connecting to %s", url)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15,
                                        sock_read=self.ingest.idle_timeout_s)
        async with self._session.get(url, timeout=timeout) as resp:
            if resp.status == 401:
                raise IngestError(
                    f"{self.streaming} refused the token (401 Unauthorized): a valid user access "
                    "token with read:statuses is required (since Mastodon 4.2 the public streams "
                    "refuse anonymous and app-only tokens)")
            if resp.status == 403:
                raise IngestError(f"{self.streaming} refused this stream (403 Forbidden): the "
                                  "token lacks read:statuses or the instance disabled the stream")
            if resp.status == 404:
                raise IngestError(f"no streaming API at {url} (404): check --instance/--endpoint "
                                  "(some instances serve streaming on another host)")
            if resp.status != 200:
                log.warning("mastodon: %s answered %s", url, resp.status)
                return 0
            self.pipeline.metrics.connected_g.set(1)
            closer = asyncio.create_task(close_on_stop(stop, resp.close))
            try:
                return await self._consume(resp)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                if not stop.is_set():
                    log.warning("mastodon: stream dropped: %s", exc)
                return 0
            finally:
                closer.cancel()

    async def _consume(self, resp: aiohttp.ClientResponse) -> int:
        pipeline = self.pipeline
        handled = 0
        event = "message"
        data: list[bytes] = []
        async for line in _lines(resp, self.ingest.max_frame_bytes):
            if line is None:  # a line longer than the limit: dead-letter what arrived
                await pipeline.process(FrameReject("too_large", "a line of the event stream is "
                                                   "larger than the frame limit"), b"")
                handled += 1
                event, data = "message", []
                continue
            if not line:
                if data:
                    raw = b"\n".join(data)
                    await self._dispatch(event, raw)
                    handled += 1
                event, data = "message", []
            elif line[:1] == b":":
                pass  # heartbeat comment (":thump")
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"event":
                    event = value.decode("utf-8", "replace").strip()
                elif name == b"data":
                    data.append(value)
        return handled

    async def _dispatch(self, event: str, raw: bytes) -> None:
        pipeline = self.pipeline
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            await pipeline.process(FrameReject("invalid_utf8", f"invalid UTF-8 at byte "
                                               f"{exc.start}"), raw)
            return
        result = map_mastodon(event, text, host=self.host, uris=pipeline.uris,
                              instance=self.instance)
        await pipeline.process(result, raw)


async def _lines(resp: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes | None]:
    """Lines of the body without their end of line (LF or CRLF); None for a line over
    ``limit`` bytes (the rest of it is skipped)."""
    rest = b""
    skipping = False
    async for chunk in resp.content.iter_any():
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for line in parts:
            if skipping:
                skipping = False
                continue
            if len(line) > limit:
                yield None
                continue
            yield line[:-1] if line.endswith(b"\r") else line
        if len(rest) > limit:
            rest = b""
            if not skipping:
                skipping = True
                yield None
    if rest and not skipping:
        yield rest.rstrip(b"\r")
