"""Several real uvicorn processes over PostgreSQL + Redis, with faults.

Each test starts its own worker processes (and, where it restarts Redis, its own
redis-server) on loopback ports; every loop is bounded in count and time. The
Python clients (``tests/support/cluster.py``, shared with the soak in
``tests/reliability``) follow the same protocol as the widget and the inbox: dedupe
by seq, resend unacknowledged messages with the same client_id after a reconnect,
and ask for a sync when a heartbeat reveals a higher seq than they have seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from crm.chat.models import ChatConversation
from tests.chat.conftest import ChatWorld
from tests.support.cluster import (
    Cluster,
    Peer,
    RedisServer,
    acked,
    agent_cookie,
    agent_peer,
    assert_exactly_once,
    send,
    settle,
    visitor_http,
    visitor_peer,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
N = 200


@pytest.fixture
def cluster(redis_url: str) -> Iterator[Cluster]:
    c = Cluster(redis_url)
    yield c
    c.stop()


def test_two_workers_exchange_200_messages_each_way_exactly_once(
    tworld: ChatWorld, cluster
) -> None:  # type: ignore[no-untyped-def]
    conv = tworld.conversation()
    tworld.service.assign_conversation(conversation=conv, agent=tworld.owner, by=tworld.owner)
    start_seq = ChatConversation.objects.get(pk=conv.pk).last_seq
    p1, p2 = cluster.start(), cluster.start()
    visitor_http(tworld, p1, conv)
    cookie = agent_cookie(tworld.owner)

    async def run() -> tuple[Peer, Peer]:
        visitor, agent = visitor_peer(tworld, conv, p1), agent_peer(cookie, conv, p2)
        await visitor.open()
        await agent.open()
        await asyncio.sleep(0.3)
        for i in range(N):
            await send(visitor, conv, f"v{i}", f"visitor {i}", agent=False)
            await send(agent, conv, f"a{i}", f"agent {i}", agent=True)
        await settle([visitor, agent], start_seq + 2 * N, conv, agent_flags=[False, True])
        await visitor.finish()
        await agent.finish()
        return visitor, agent

    visitor, agent = asyncio.run(run())
    assert_exactly_once(conv, [visitor, agent], start_seq + 2 * N)
    # Without faults the live stream itself carried each message once, in seq order.
    for peer in (visitor, agent):
        live = [s for s in peer.raw if s > start_seq]
        assert len(live) == len(set(live)), f"{peer.name} got duplicates"
        assert live == sorted(live), f"{peer.name} got messages out of order"
    print(f"\ndelivered={2 * N} each way, lost=0, duplicated=0")


def test_sigkill_of_a_worker_and_a_dropped_socket_lose_nothing(tworld: ChatWorld, cluster) -> None:  # type: ignore[no-untyped-def]
    conv = tworld.conversation()
    tworld.service.assign_conversation(conversation=conv, agent=tworld.owner, by=tworld.owner)
    start_seq = ChatConversation.objects.get(pk=conv.pk).last_seq
    p1, p2 = cluster.start(), cluster.start()
    cookie = agent_cookie(tworld.owner)

    async def run() -> tuple[Peer, Peer]:
        visitor, agent = visitor_peer(tworld, conv, p1), agent_peer(cookie, conv, p2)
        await visitor.open()
        await agent.open()
        for i in range(N):
            if i == N // 3:
                # The agent's socket drops mid-stream; it reconnects with since.
                await agent.ws.close()  # type: ignore[attr-defined]
                await agent.open()
            if i == 2 * N // 3:
                # The visitor's worker is SIGKILLed; the visitor moves to the other one.
                cluster.kill(p1)
                await visitor.open(p2)
            await send(visitor, conv, f"v{i}", f"visitor {i}", agent=False)
            await send(agent, conv, f"a{i}", f"agent {i}", agent=True)
        await settle([visitor, agent], start_seq + 2 * N, conv, agent_flags=[False, True])
        await visitor.finish()
        await agent.finish()
        return visitor, agent

    visitor, agent = asyncio.run(run())
    assert_exactly_once(conv, [visitor, agent], start_seq + 2 * N)
    dup = sum(len(p.raw) - len(set(p.raw)) for p in (visitor, agent))
    print(f"\ndelivered={2 * N} each way, lost=0, duplicated after dedupe=0 (raw repeats {dup})")


def test_a_redis_restart_loses_nothing(tworld: ChatWorld, settings) -> None:  # type: ignore[no-untyped-def]
    redis = RedisServer()
    redis.start()
    cluster = Cluster(redis.url)
    try:
        conv = tworld.conversation()
        tworld.service.assign_conversation(conversation=conv, agent=tworld.owner, by=tworld.owner)
        start_seq = ChatConversation.objects.get(pk=conv.pk).last_seq
        p1, p2 = cluster.start(), cluster.start()
        cookie = agent_cookie(tworld.owner)

        async def run() -> tuple[Peer, Peer]:
            visitor, agent = visitor_peer(tworld, conv, p1), agent_peer(cookie, conv, p2)
            await visitor.open()
            await agent.open()
            for i in range(N):
                if i == N // 2:
                    await acked(visitor, agent)  # the stream is flowing when Redis dies
                    redis.stop()
                if i == N // 2 + 20:
                    await acked(visitor, agent)  # these 20 each way went out while it was down
                    redis.start()
                await send(visitor, conv, f"v{i}", f"visitor {i}", agent=False)
                await send(agent, conv, f"a{i}", f"agent {i}", agent=True)
            await settle([visitor, agent], start_seq + 2 * N, conv, agent_flags=[False, True],
                          timeout=90)  # fmt: skip
            await visitor.finish()
            await agent.finish()
            return visitor, agent

        visitor, agent = asyncio.run(run())
        assert_exactly_once(conv, [visitor, agent], start_seq + 2 * N)
        print(f"\nRedis restarted mid-stream: delivered={2 * N} each way, lost=0, duplicated=0")
    finally:
        cluster.stop()
        redis.stop()
