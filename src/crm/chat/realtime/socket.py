"""A lean ASGI WebSocket handler: JSON frames in, hub events in, one at a time.

Why not Channels' consumer: its dispatch wraps every message in thread hops and
per-socket channel plumbing, ~1 ms of CPU per chat message before any database
work (shared/PERF.md). This class keeps what the chat sockets rely on and nothing
else:

- frames from the client and events from the hub (``crm.chat.realtime.hub``) are
  handled strictly one at a time, in arrival order, by one task per socket; the
  lossless replay logic in ``stream.py`` counts on that (a replay is never
  interleaved with a live event);
- a frame ``{"type": "send", …}`` goes to ``on_send``; a hub event
  ``{"type": "chat.event", …}`` to ``chat_event``;
- JSON is read and written with orjson;
- a client that stops reading for ``SEND_TIMEOUT`` seconds is dropped (it
  reconnects and resumes by seq), which bounds what one slow socket holds.

Routing and the agent's session still come from Channels' ``URLRouter`` and
``AuthMiddlewareStack``, which are plain ASGI middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson

from crm.chat.realtime.hub import get_hub

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# A client that doesn't read for this long is dropped; it reconnects and resumes by
# seq. This bounds what piles up for one slow socket in memory to a few seconds.
SEND_TIMEOUT = 10


class StopSocket(Exception):
    """Raised anywhere in a handler: end this socket now."""


class Mailbox:
    """A socket's queue of client frames and hub events, for its one reader.

    ``asyncio.Queue`` does the same with four deques and an ``Event``: 3.3 KB per
    socket, a tenth of an idle socket's memory. A list and the reader's waiting
    future are all one consumer on one event loop needs.
    """

    __slots__ = ("_head", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[tuple[bool, dict[str, Any]]] = []
        self._head = 0  # items before it were taken; the list is cleared once drained
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items) - self._head

    def put(self, item: tuple[bool, dict[str, Any]]) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> tuple[bool, dict[str, Any]]:
        while self._head == len(self._items):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items[self._head]
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        return item


class WebSocketHandler:
    """One WebSocket connection. Subclasses implement ``connect`` and ``on_<type>``."""

    # The frame types a client may send (``on_<type>`` methods); anything else is
    # answered with an ``unknown_type`` error instead of reaching a method.
    frame_types: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._asgi_receive = receive
        self._asgi_send = send
        self._inbox = Mailbox()
        self._groups: set[str] = set()
        self.accepted = False
        self.closed = False

    @classmethod
    def as_asgi(cls) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await cls(scope, receive, send).run()

        app.handler_class = cls  # type: ignore[attr-defined]
        return app

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        reader = asyncio.ensure_future(self._read_client())
        code = 1000
        try:
            while True:
                from_client, message = await self._inbox.get()
                if from_client:
                    kind = message["type"]
                    if kind == "websocket.connect":
                        await self.connect()
                    elif kind == "websocket.receive":
                        if not self.closed:
                            await self._frame(message)
                    elif kind == "websocket.disconnect":
                        code = message.get("code", 1000)
                        break
                elif not self.closed:
                    handler = getattr(self, message["type"].replace(".", "_"), None)
                    if handler is not None:
                        await handler(message)
        except StopSocket:
            await self._close_quietly(1011)
        except OSError:
            pass  # the client went away while a frame was being written
        except Exception:
            logger.exception("chat socket failed: %s", self.scope.get("path"))
            await self._close_quietly(1011)
        finally:
            reader.cancel()
            hub = get_hub()
            for group in tuple(self._groups):
                await hub.leave(group, self)
            self._groups.clear()
            await self.disconnect(code)

    async def _read_client(self) -> None:
        while True:
            message = await self._asgi_receive()
            self._inbox.put((True, message))
            if message["type"] == "websocket.disconnect":
                return

    def deliver(self, message: dict[str, Any]) -> None:
        """A hub event for this socket (see ``crm.chat.realtime.hub.Member``)."""
        self._inbox.put((False, message))

    async def _frame(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            text = message["bytes"]
        try:
            content = orjson.loads(text) if text is not None else None
        except orjson.JSONDecodeError:
            content = None
        await self.receive_json(content)

    # ------------------------------------------------------------ to override

    async def connect(self) -> None:
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """The socket is gone (``code``: the close code); groups were already left."""

    async def receive_json(self, content: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("bad_frame", "Frames are JSON objects with a type.")
            return
        kind = content["type"]
        if kind not in self.frame_types:
            await self.send_error("unknown_type", f"Unknown frame type {kind!r}.")
            return
        await getattr(self, f"on_{kind}")(content)

    # ------------------------------------------------------------ actions

    async def accept(self) -> None:
        await self._asgi_send({"type": "websocket.accept"})
        self.accepted = True

    async def close(self, code: int = 1000) -> None:
        """Close (or, before accepting, refuse) the socket; its task ends on disconnect."""
        if self.closed:
            return
        self.closed = True
        await self._asgi_send({"type": "websocket.close", "code": code})

    async def _close_quietly(self, code: int) -> None:
        with contextlib.suppress(Exception):
            await self.close(code)

    async def send_json(self, content: Any) -> None:
        if self.closed:
            return
        text = orjson.dumps(content).decode()
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self._asgi_send({"type": "websocket.send", "text": text})
        except TimeoutError:
            logger.warning("dropping a chat socket that stopped reading: %s", self.scope["path"])
            raise StopSocket() from None

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    async def join(self, group: str) -> None:
        """Receive the hub's events of ``group`` from now on (confirmed on return)."""
        self._groups.add(group)
        await get_hub().join(group, self)

    async def leave(self, group: str) -> None:
        self._groups.discard(group)
        await get_hub().leave(group, self)
