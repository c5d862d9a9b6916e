"""Realtime events: their schema, their groups, and publishing after commit.

Every change a client must see is one pydantic model here. Services build the
event next to the write and hand it to ``publish_on_commit``: a rolled-back write
therefore never produces an event (Zulip's ``send_event_on_commit``). Events go to
sockets through the hub (``crm.chat.realtime.hub``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from django.db import transaction
from pydantic import BaseModel, ConfigDict

from crm.chat.realtime import hub

if TYPE_CHECKING:
    from crm.chat.payloads import MessageJSON

logger = logging.getLogger(__name__)

INBOX_GROUP = "crm-chat-inbox"
# Visitor sockets listen here for "an agent came online" and re-check their widget.
PRESENCE_GROUP = "crm-chat-presence"
# The hub message type sockets handle: "chat.event" goes to ``chat_event``.
HUB_MESSAGE_TYPE = "chat.event"


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


# What travels to sockets: a JSON-ready dict with the event's ``type``. Message
# events are built as dicts directly (``message_event``): they are the hot path;
# the rarer ones are validated through their model first.
EventJSON = dict[str, Any]


def as_json(event: ChatEvent | EventJSON) -> EventJSON:
    return event if isinstance(event, dict) else event.model_dump(mode="json")


_MODELS: dict[str, type[ChatEvent]] = {
    model.model_fields["type"].default: model
    for model in (MessageCreated, StatusChanged, Assigned, ReadReceipt, ConversationOpened, Typing)
}


def as_model(event: ChatEvent | EventJSON) -> ChatEvent:
    """The event as its model: a JSON-ready dict is validated against its schema."""
    if isinstance(event, dict):
        return _MODELS[event["type"]].model_validate(event)
    return event


def message_event(conversation: UUID, payload: MessageJSON) -> EventJSON:
    """``MessageCreated`` as sent, from a payload already built for the ack."""
    return {
        "type": "message",
        "conversation": str(conversation),
        "seq": payload["seq"],
        "message": payload,
    }


def _hub_message(event: ChatEvent | EventJSON) -> dict[str, Any]:
    return {"type": HUB_MESSAGE_TYPE, "event": as_json(event)}


async def send_now_async(groups: list[str], event: ChatEvent | EventJSON) -> None:
    """Send an event to groups right away, from the event loop."""
    await hub.get_hub().publish(groups, _hub_message(event))


def send_now(groups: list[str], event: ChatEvent | EventJSON) -> None:
    """Send an event to groups right away, from a thread (a view, a signal receiver)."""
    hub.publish_from_thread(groups, _hub_message(event))


# Set by a socket around its database work: committed events are handed back to
# the socket's event loop, which publishes them before answering the client.
Pending = list[tuple[list[str], ChatEvent | EventJSON]]
_collector: ContextVar[Pending | None] = ContextVar("crm_chat_event_collector", default=None)


@contextmanager
def collected(pending: Pending | None = None) -> Iterator[Pending]:
    """Collect the events committed inside this context (into ``pending`` if given,
    e.g. a list the socket's event loop handed to a database thread); the caller
    sends them."""
    if pending is None:
        pending = []
    token = _collector.set(pending)
    try:
        yield pending
    finally:
        _collector.reset(token)


def publish_on_commit(event: ChatEvent | EventJSON, *, inbox: bool = True) -> None:
    """Publish to the conversation's group (and the agents' inbox) once committed."""
    conversation = event["conversation"] if isinstance(event, dict) else event.conversation
    groups = [conversation_group(conversation)]
    if inbox:
        groups.append(INBOX_GROUP)
    pending = _collector.get()
    if pending is not None:
        transaction.on_commit(lambda: pending.append((groups, event)), robust=True)
    else:
        transaction.on_commit(lambda: send_now(groups, event), robust=True)
