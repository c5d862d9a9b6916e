"""A hub member for tests: what a socket in a group would receive."""

from __future__ import annotations

import asyncio
from typing import Any

from crm.chat.realtime.hub import Hub, get_hub


class Listener:
    """Joins groups like a socket does and keeps what the hub hands it."""

    def __init__(self, hub: Hub | None = None) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def deliver(self, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)

    async def join(self, group: str) -> None:
        await (self.hub or get_hub()).join(group, self)

    async def drain(self, *, idle: float = 0.3) -> list[dict[str, Any]]:
        """Everything received until it stays quiet for ``idle`` seconds."""
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(self.queue.get(), idle))
            except TimeoutError:
                return received
