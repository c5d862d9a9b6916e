"""Realtime events: their schema, their groups, and publishing after commit.

Every change a client must see is one pydantic model here. Services build the
event next to the write and hand it to ``publish_on_commit``: a rolled-back write
therefore never produces an event (Zulip's ``send_event_on_commit``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Literal
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)

INBOX_GROUP = "crm-chat-inbox"
# Visitor sockets listen here for "an agent came online" and re-check their widget.
PRESENCE_GROUP = "crm-chat-presence"
# Message type consumers handle: Channels maps "chat.event" to ``chat_event``.
LAYER_MESSAGE_TYPE = "chat.event"


def conversation_group(conversation_external_id: UUID | str) -> str:
    """The spec's channel name, ``crm-chat.{conversation_external_id}``."""
    return f"crm-chat.{conversation_external_id}"


# The values of ``ChatConversation.status`` and ``ChatMessage.sender_type``.
ConversationStatus = Literal["open", "pending", "closed"]
SenderType = Literal["user", "visitor", "system"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MessagePayload(_Event):
    id: UUID
    seq: int
    sender_type: SenderType
    sender_name: str
    body: str
    client_id: str | None
    internal: bool
    created_at: datetime
    read_at: datetime | None


class MessageCreated(_Event):
    type: Literal["message"] = "message"
    conversation: UUID
    seq: int
    message: MessagePayload


class StatusChanged(_Event):
    type: Literal["status"] = "status"
    conversation: UUID
    seq: int
    status: ConversationStatus


class Assigned(_Event):
    type: Literal["assigned"] = "assigned"
    conversation: UUID
    seq: int
    agent_id: int | None
    agent_name: str | None


class ReadReceipt(_Event):
    type: Literal["read"] = "read"
    conversation: UUID
    seq: int
    # Who read: the visitor read agent messages, or an agent read visitor messages.
    reader: Literal["user", "visitor"]
    up_to_seq: int


class ConversationOpened(_Event):
    type: Literal["opened"] = "opened"
    conversation: UUID
    seq: int
    chat_id: str


class Typing(_Event):
    """Not stored: relayed by consumers only."""

    type: Literal["typing"] = "typing"
    conversation: UUID
    sender_type: Literal["user", "visitor"]
    sender_id: int
    sender_name: str
    typing: bool


ChatEvent = MessageCreated | StatusChanged | Assigned | ReadReceipt | ConversationOpened | Typing


async def send_now_async(groups: list[str], event: ChatEvent) -> None:
    """Send an event to groups right away (typing, which is not stored)."""
    layer = get_channel_layer()
    if layer is None:
        return
    payload = {"type": LAYER_MESSAGE_TYPE, "event": event.model_dump(mode="json")}
    for group in groups:
        try:
            await layer.group_send(group, payload)
        except Exception:
            # Realtime is best effort: clients resume from the database by seq, so a
            # layer outage must never fail the write that already committed.
            logger.exception("could not publish %s to %s", event.type, group)


def send_now(groups: list[str], event: ChatEvent) -> None:
    async_to_sync(send_now_async)(groups, event)


# Set by a WebSocket consumer around its database work: committed events are handed
# back to the consumer's event loop instead of each taking an async_to_sync hop out
# of the worker thread (about a millisecond per message; see bench/PROFILE.md).
_collector: ContextVar[list[tuple[list[str], ChatEvent]] | None] = ContextVar(
    "crm_chat_event_collector", default=None
)


@contextmanager
def collected() -> Iterator[list[tuple[list[str], ChatEvent]]]:
    """Collect the events committed inside this context; the caller sends them."""
    pending: list[tuple[list[str], ChatEvent]] = []
    token = _collector.set(pending)
    try:
        yield pending
    finally:
        _collector.reset(token)


def publish_on_commit(event: ChatEvent, *, inbox: bool = True) -> None:
    """Publish to the conversation's group (and the agents' inbox) once committed."""
    groups = [conversation_group(event.conversation)]
    if inbox:
        groups.append(INBOX_GROUP)
    pending = _collector.get()
    if pending is not None:
        transaction.on_commit(lambda: pending.append((groups, event)), robust=True)
    else:
        transaction.on_commit(lambda: send_now(groups, event), robust=True)
