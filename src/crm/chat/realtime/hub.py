"""Groups of sockets: fan-out in this process, and across processes over Redis pub/sub.

Why not a Channels layer: a channel layer gives every socket its own channel and
queue and routes each event through them, which measured about 1 ms of worker CPU
per delivered message before any database work (shared/PERF.md, ~18x a bare
server). The product needs less: a process keeps which of its sockets are in which
group, hands an event to them directly, and publishes it once to Redis for the
other processes, whose single subscriber connection does the same on their side.

- One hub per event loop (a server has one; tests make one per test), found with
  ``get_hub()``. Without ``REDIS_URL`` a hub is local only: one process, as the
  embedded default runs.
- ``join`` returns once Redis has confirmed the subscription, so a socket that
  joins and then replays from the database can't miss an event in between (the
  delivery guarantee in ``stream.py`` rests on this).
- A lost Redis connection is re-established with backoff and every group
  re-subscribed; since events may have been published meanwhile, every socket of
  the process is then told to resync from the database (``chat.resync``).
- Code outside the event loop (HTTP views, signal receivers, ``crm worker``)
  publishes with ``publish_from_thread``: its own process's sockets get the event
  through their loop, the other processes through Redis.

Events are JSON-ready dicts with a ``type`` naming the socket method that handles
them (``chat.event`` → ``chat_event``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)

# Marks what this process published, so its subscriber skips its own echo (the
# local sockets already got it).
ORIGIN = os.urandom(8).hex().encode()
_ORIGIN_LEN = len(ORIGIN)
SUBSCRIBE_TIMEOUT = 3.0
RESYNC = {"type": "chat.resync"}


class Member(Protocol):
    def deliver(self, message: dict[str, Any]) -> None:
        """Take one event; called on the hub's loop, must not block."""


def _channel_prefix() -> str:
    return f"{settings.CRM_TABLE_PREFIX}hub:"


def encode(message: dict[str, Any], origin: bytes = ORIGIN) -> bytes:
    return origin + orjson.dumps(message)


class Hub:
    """The groups of one event loop's sockets, and their Redis subscription."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, redis_url: str | None, *, origin: bytes = ORIGIN
    ) -> None:
        self.loop = loop
        # Tests give a hub another origin to stand for a second process.
        self.origin = origin
        self.redis_url = redis_url
        self.prefix = _channel_prefix()
        self.members: dict[str, set[Member]] = {}
        # group -> future resolved when Redis confirmed the subscription
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._pubsub: Any = None
        self._publisher: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    # ------------------------------------------------------------ membership

    async def join(self, group: str, member: Member) -> None:
        members = self.members.get(group)
        if members is None:
            members = self.members[group] = set()
        members.add(member)
        if self.redis_url is None:
            return
        ready = self._subscribed.get(group)
        if ready is None:
            ready = self._subscribed[group] = self.loop.create_future()
            await self._send_subscription("subscribe", group)
        try:
            await asyncio.wait_for(asyncio.shield(ready), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            # The periodic ping compares last seqs, so a socket still catches up
            # once Redis is back; joining must not hang meanwhile.
            logger.warning("Redis did not confirm the subscription to %s in time", group)

    async def leave(self, group: str, member: Member) -> None:
        members = self.members.get(group)
        if members is None:
            return
        members.discard(member)
        if members:
            return
        del self.members[group]
        if self.redis_url is not None and self._subscribed.pop(group, None) is not None:
            await self._send_subscription("unsubscribe", group)

    # ------------------------------------------------------------ publishing

    def fan_out(self, groups: Iterable[str], message: dict[str, Any]) -> None:
        """Hand ``message`` to this loop's members of ``groups`` (each member once)."""
        seen: set[int] = set()
        for group in groups:
            for member in tuple(self.members.get(group, ())):
                if id(member) not in seen:
                    seen.add(id(member))
                    member.deliver(message)

    async def publish(self, groups: list[str], message: dict[str, Any]) -> None:
        """Send to every socket of ``groups``: this process's now, the others' via Redis.

        The Redis side is queued and written by one task per hub, in order, as one
        pipeline per batch: under load many events share a round trip, and the
        caller (a socket about to ack a send) never waits for Redis.
        """
        self.fan_out(groups, message)
        if self.redis_url is None:
            return
        data = encode(message, self.origin)
        self._outbox.extend((self.prefix + group, data) for group in groups)
        if self._flusher is None or self._flusher.done():
            self._flusher = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                async with self._get_publisher().pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except Exception:
                # Best effort: clients resume from the database by seq, so a Redis
                # outage must never fail the write that already committed.
                logger.exception("could not publish %d events to Redis", len(batch))

    @property
    def client_name(self) -> str:
        """The subscriber's name in Redis's CLIENT LIST: which process it serves."""
        return f"crm-hub-{self.origin.decode()}"

    def _get_publisher(self) -> aioredis.Redis:
        if self._publisher is None:
            assert self.redis_url is not None
            self._publisher = aioredis.Redis.from_url(self.redis_url)
        return self._publisher

    # ------------------------------------------------------------ subscriber

    async def _send_subscription(self, command: str, group: str) -> None:
        self._ensure_reader()
        if not self._connected.is_set():
            return  # the reader subscribes every group once it (re)connects
        try:
            await getattr(self._pubsub, command)(self.prefix + group)
        except Exception:
            logger.warning("Redis %s of %s failed; the reader reconnects", command, group)

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = self.loop.create_task(self._read_forever())

    async def _read_forever(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                await self._connect()
                if not first:
                    # Events published while the subscription was down are lost:
                    # every socket of this loop reads what it missed from the database.
                    self.fan_out(list(self.members), RESYNC)
                first, delay = False, 0.1
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Redis subscription lost; reconnecting", exc_info=True)
            self._connected.clear()
            await self._close_pubsub()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _connect(self) -> None:
        assert self.redis_url is not None
        # No retries inside redis-py: a reconnect it made silently would hide lost
        # events; this loop reconnects and resyncs instead.
        client = aioredis.Redis.from_url(
            self.redis_url, retry=Retry(NoBackoff(), 0), client_name=self.client_name
        )
        self._pubsub = client.pubsub()
        # Listening needs one subscription at least; this channel carries nothing.
        await self._pubsub.subscribe(self.prefix + "-")
        # From here on a new group subscribes itself (``join``); every group joined
        # before is in this list, taken with no await in between.
        self._connected.set()
        groups = [self.prefix + group for group in self._subscribed]
        if groups:
            await self._pubsub.subscribe(*groups)

    async def _read(self) -> None:
        prefix_len = len(self.prefix)
        while True:
            item = await self._pubsub.parse_response(block=True)
            if item is None:
                continue
            kind = item[0].decode() if isinstance(item[0], bytes) else item[0]
            channel = item[1].decode() if isinstance(item[1], bytes) else item[1]
            group = channel[prefix_len:]
            if kind == "subscribe":
                ready = self._subscribed.get(group)
                if ready is not None and not ready.done():
                    ready.set_result(None)
            elif kind == "message":
                data = item[2]
                if data[:_ORIGIN_LEN] == self.origin:
                    continue  # published by this process: delivered locally already
                try:
                    message = orjson.loads(data[_ORIGIN_LEN:])
                except orjson.JSONDecodeError:
                    logger.warning("dropping a malformed hub message on %s", channel)
                    continue
                self.fan_out((group,), message)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def aclose(self) -> None:
        """Stop the subscriber and close the connections (tests, shutdown)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None
        await self._close_pubsub()
        if self._publisher is not None:
            await self._publisher.aclose()
            self._publisher = None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()
_sync_publishers: dict[str, redis.Redis] = {}


def redis_url() -> str | None:
    return getattr(settings, "REDIS_URL", None) or None


def get_hub() -> Hub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = Hub(loop, redis_url())
        return hub


def publish_from_thread(groups: list[str], message: dict[str, Any]) -> None:
    """Publish from code outside the event loop (views, signal receivers, workers)."""
    with _hubs_lock:
        hubs = [hub for loop, hub in _hubs.items() if not loop.is_closed()]
    for hub in hubs:
        # RuntimeError: that loop closed meanwhile (a server shutting down).
        with contextlib.suppress(RuntimeError):
            hub.loop.call_soon_threadsafe(hub.fan_out, groups, message)
    url = redis_url()
    if url is None:
        return
    try:
        with _hubs_lock:
            publisher = _sync_publishers.get(url)
            if publisher is None:
                publisher = _sync_publishers[url] = redis.Redis.from_url(url)
        data = encode(message)
        prefix = _channel_prefix()
        with publisher.pipeline(transaction=False) as pipe:
            for group in groups:
                pipe.publish(prefix + group, data)
            pipe.execute()
    except Exception:
        logger.exception("could not publish %s to Redis", message.get("type"))
