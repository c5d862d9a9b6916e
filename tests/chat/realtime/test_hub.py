"""The realtime hub: groups in one process, and across processes over a real Redis.

"Another process" is a second hub with its own origin on the same Redis: only what
travels through Redis can reach it, exactly as between two workers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import redis

from crm.chat.realtime import hub
from crm.chat.realtime.hub import Hub
from tests.chat.hub_support import Listener

OTHER = b"1" * len(hub.ORIGIN)


async def _next(listener: Listener, timeout: float = 10.0) -> dict:
    return await asyncio.wait_for(listener.queue.get(), timeout)


class LocalHubTests:
    async def test_a_member_gets_each_event_of_its_groups_once(self) -> None:
        local = Hub(asyncio.get_running_loop(), None)
        listener, bystander = Listener(local), Listener(local)
        await listener.join("a")
        await listener.join("b")
        await bystander.join("c")
        await local.publish(["a", "b"], {"type": "chat.event", "n": 1})
        assert await listener.drain(idle=0.05) == [{"type": "chat.event", "n": 1}]
        assert await bystander.drain(idle=0.05) == []

    async def test_a_member_that_left_gets_nothing(self) -> None:
        local = Hub(asyncio.get_running_loop(), None)
        listener = Listener(local)
        await listener.join("a")
        await local.leave("a", listener)
        await local.publish(["a"], {"type": "chat.event"})
        assert await listener.drain(idle=0.05) == []
        assert local.members == {}

    async def test_a_thread_reaches_the_loops_members(self, settings) -> None:
        settings.REDIS_URL = None
        listener = Listener()
        await listener.join("a")
        thread = threading.Thread(
            target=hub.publish_from_thread, args=(["a"], {"type": "chat.event", "from": "thread"})
        )
        thread.start()
        thread.join(10)
        assert await _next(listener) == {"type": "chat.event", "from": "thread"}


@pytest.mark.redis
class RedisHubTests:
    @pytest.fixture
    async def pair(self, settings, redis_url: str) -> AsyncIterator[tuple[Hub, Hub]]:
        """This process's hub and another process's, on the same Redis."""
        settings.REDIS_URL = redis_url
        loop = asyncio.get_running_loop()
        mine, other = Hub(loop, redis_url), Hub(loop, redis_url, origin=OTHER)
        yield mine, other
        await mine.aclose()
        await other.aclose()

    async def test_an_event_reaches_the_other_process_once_join_returned(
        self, pair: tuple[Hub, Hub]
    ) -> None:
        mine, other = pair
        remote, local = Listener(other), Listener(mine)
        await remote.join("conv")  # returns once Redis confirmed: no sleep needed
        await local.join("conv")
        await mine.publish(["conv"], {"type": "chat.event", "seq": 1})
        assert await _next(remote) == {"type": "chat.event", "seq": 1}
        # This process's member got it directly, and not a second time from Redis.
        assert await local.drain(idle=0.3) == [{"type": "chat.event", "seq": 1}]

    async def test_groups_joined_while_the_subscriber_connects_are_all_subscribed(
        self, pair: tuple[Hub, Hub], caplog: pytest.LogCaptureFixture
    ) -> None:
        mine, other = pair
        listeners = [Listener(other) for _ in range(20)]
        # The first join starts the subscriber's connection; the others come while
        # it is connecting.
        first = asyncio.ensure_future(listeners[0].join("g0"))
        for _ in range(3):
            await asyncio.sleep(0)
        await asyncio.gather(first, *(lst.join(f"g{i}") for i, lst in enumerate(listeners) if i))
        assert "did not confirm" not in caplog.text
        for i in range(20):
            await mine.publish([f"g{i}"], {"type": "chat.event", "g": i})
        assert [(await _next(lst))["g"] for lst in listeners] == list(range(20))

    async def test_events_keep_their_order_across_processes(self, pair: tuple[Hub, Hub]) -> None:
        mine, other = pair
        remote = Listener(other)
        await remote.join("conv")
        for seq in range(1, 201):
            await mine.publish(["conv", "inbox"], {"type": "chat.event", "seq": seq})
        got = [(await _next(remote))["seq"] for _ in range(200)]
        assert got == list(range(1, 201))

    async def test_a_lost_subscription_reconnects_and_tells_members_to_resync(
        self, pair: tuple[Hub, Hub], redis_url: str
    ) -> None:
        mine, other = pair
        remote = Listener(other)
        await remote.join("conv")
        admin = redis.Redis.from_url(redis_url)
        try:
            (addr,) = [c["addr"] for c in admin.client_list() if c["name"] == other.client_name]
            assert admin.client_kill_filter(addr=addr) == 1
        finally:
            admin.close()
        assert await _next(remote) == hub.RESYNC
        # Subscribed again: later events arrive as before.
        await asyncio.wait_for(other._connected.wait(), 10)
        await asyncio.sleep(0.2)
        await mine.publish(["conv"], {"type": "chat.event", "seq": 2})
        assert await _next(remote) == {"type": "chat.event", "seq": 2}

    async def test_a_thread_reaches_other_processes_through_redis(
        self, pair: tuple[Hub, Hub]
    ) -> None:
        _, other = pair
        remote = Listener(other)
        await remote.join("conv")
        await asyncio.to_thread(hub.publish_from_thread, ["conv"], {"type": "chat.recheck"})
        assert await _next(remote) == {"type": "chat.recheck"}

    async def test_a_left_group_is_unsubscribed(self, pair: tuple[Hub, Hub]) -> None:
        mine, other = pair
        remote = Listener(other)
        await remote.join("conv")
        await other.leave("conv", remote)
        await mine.publish(["conv"], {"type": "chat.event"})
        assert await remote.drain(idle=0.3) == []
        assert "conv" not in other.members
