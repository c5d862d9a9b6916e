"""Events reach the hub after commit, and never for a rolled-back write.

In one process they reach a listener directly; with Redis they also reach a hub
that stands for another process (its own origin), which only Redis can feed.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from crm.chat import events
from crm.chat.realtime import hub
from crm.chat.realtime.hub import Hub
from tests.chat.conftest import ChatWorld
from tests.chat.hub_support import Listener


async def _collect(
    world: ChatWorld, write, *, group: str | None = None, hub: Hub | None = None
) -> list[dict]:
    listener = Listener(hub)
    conv = await sync_to_async(world.conversation)()
    await listener.join(group or events.conversation_group(conv.external_id))
    await sync_to_async(write)(conv)
    return [m["event"] for m in await listener.drain()]


def _send_two(world: ChatWorld):
    def write(conv):
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="one")
        world.service.send_agent_message(conversation=conv, agent=world.owner, body="two")

    return write


def _rolled_back(world: ChatWorld):
    def write(conv):
        with pytest.raises(RuntimeError), transaction.atomic():
            world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="x")
            world.service.close_conversation(conversation=conv, by=world.owner)
            raise RuntimeError("abort")

    return write


def _assert_message_events(received: list[dict]) -> None:
    assert [(e["type"], e["seq"]) for e in received] == [
        ("message", 1),
        ("message", 2),  # "Olivia joined the chat."
        ("assigned", 2),
        ("message", 3),
    ]
    for event in received:
        # Every event validates against its schema after a JSON round trip.
        model = {"message": events.MessageCreated, "assigned": events.Assigned}[event["type"]]
        model.model_validate(event)
    assert received[0]["message"]["body"] == "one"
    assert received[0]["message"]["sender_name"].startswith("Visitor #")
    assert received[3]["message"]["sender_name"] == "Olivia"


@pytest.mark.django_db(transaction=True)
class LocalHubEventTests:
    async def test_it_publishes_each_write_after_commit(self, tworld: ChatWorld):
        _assert_message_events(await _collect(tworld, _send_two(tworld)))

    async def test_it_also_tells_the_inbox_group(self, tworld: ChatWorld):
        received = await _collect(tworld, _send_two(tworld), group=events.INBOX_GROUP)
        assert [e["type"] for e in received] == ["message", "message", "assigned", "message"]

    async def test_it_publishes_nothing_for_a_rolled_back_write(self, tworld: ChatWorld):
        assert await _collect(tworld, _rolled_back(tworld)) == []


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
class RedisHubEventTests:
    @pytest.fixture
    async def other_process(self, settings, redis_url: str):
        """A hub of "another process": only what goes through Redis reaches it."""
        settings.REDIS_URL = redis_url
        other = Hub(asyncio.get_running_loop(), redis_url, origin=b"0" * len(hub.ORIGIN))
        yield other
        await other.aclose()

    async def test_it_publishes_each_write_after_commit(self, tworld: ChatWorld, other_process):
        _assert_message_events(await _collect(tworld, _send_two(tworld), hub=other_process))

    async def test_it_publishes_nothing_for_a_rolled_back_write(
        self, tworld: ChatWorld, other_process
    ):
        assert await _collect(tworld, _rolled_back(tworld), hub=other_process) == []
