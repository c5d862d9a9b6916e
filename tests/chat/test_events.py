"""Events reach the channel layer after commit, and never for a rolled-back write."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from crm.chat import events
from tests.chat.conftest import ChatWorld


async def _drain(layer, channel: str, *, idle: float = 0.3) -> list[dict]:
    """Everything the channel receives until it stays quiet for ``idle`` seconds."""
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(layer.receive(channel), idle))
        except TimeoutError:
            return received


async def _collect(world: ChatWorld, write, *, group: str | None = None) -> list[dict]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    conv = await sync_to_async(world.conversation)()
    await layer.group_add(group or events.conversation_group(conv.external_id), channel)
    await sync_to_async(write)(conv)
    return [m["event"] for m in await _drain(layer, channel)]


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
class InMemoryLayerEventTests:
    async def test_it_publishes_each_write_after_commit(self, tworld: ChatWorld):
        _assert_message_events(await _collect(tworld, _send_two(tworld)))

    async def test_it_also_tells_the_inbox_group(self, tworld: ChatWorld):
        received = await _collect(tworld, _send_two(tworld), group=events.INBOX_GROUP)
        assert [e["type"] for e in received] == ["message", "message", "assigned", "message"]

    async def test_it_publishes_nothing_for_a_rolled_back_write(self, tworld: ChatWorld):
        assert await _collect(tworld, _rolled_back(tworld)) == []


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
class RedisLayerEventTests:
    @pytest.fixture(autouse=True)
    def _redis_layer(self, settings, redis_url: str) -> None:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [redis_url], "prefix": "crm-test-events"},
            }
        }

    async def test_it_publishes_each_write_after_commit(self, tworld: ChatWorld):
        assert "Redis" in type(get_channel_layer()).__name__
        _assert_message_events(await _collect(tworld, _send_two(tworld)))

    async def test_it_publishes_nothing_for_a_rolled_back_write(self, tworld: ChatWorld):
        assert await _collect(tworld, _rolled_back(tworld)) == []
