"""Client-facing shapes of stored messages, shared by the API, the sockets and events.

Payloads are built as JSON-ready dicts, not pydantic models: a message's payload
is built on every send and every replay, and the model's validation and dump cost
more than the rest of the socket's Python work for that message. Their shape is
``events.MessagePayload`` (which documents it and is the API's schema); a test
holds the two together.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from crm.chat.models import ChatMessage, ChatVisitor


class MessageJSON(TypedDict):
    """``events.MessagePayload`` as sent: ids and times as strings."""

    id: str
    seq: int
    sender_type: Literal["user", "visitor", "system"]
    sender_name: str
    body: str
    client_id: str | None
    internal: bool
    created_at: str
    read_at: str | None


def json_time(value: datetime) -> str:
    """An aware datetime as the API writes it: UTC, ISO 8601, ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def agent_display_name(user: User | None) -> str:
    if user is None:
        return "Agent"
    return user.get_full_name() or user.get_username()


def message_payload(message: ChatMessage, *, sender_name: str) -> MessageJSON:
    return {
        "id": str(message.external_id),
        "seq": message.seq,
        "sender_type": message.sender_type,  # type: ignore[typeddict-item]
        "sender_name": sender_name,
        "body": message.body,
        "client_id": message.client_id,
        "internal": message.is_internal,
        "created_at": json_time(message.created_at),
        "read_at": json_time(message.read_at) if message.read_at else None,
    }


def sender_names(messages: Iterable[ChatMessage], *, visitor: ChatVisitor) -> dict[int, str]:
    """Display name per message id, with one query for all the agents involved."""
    messages = list(messages)
    agent_ids = {m.sender_id for m in messages if m.sender_type == "user" and m.sender_id}
    agents = {u.pk: u for u in get_user_model().objects.filter(pk__in=agent_ids)}
    names: dict[int, str] = {}
    for m in messages:
        if m.sender_type == "visitor":
            names[m.pk] = visitor.display_name
        elif m.sender_type == "user":
            agent = agents.get(m.sender_id) if m.sender_id is not None else None
            names[m.pk] = agent_display_name(agent)
        else:
            names[m.pk] = "System"
    return names


def message_payloads(messages: Iterable[ChatMessage], *, visitor: ChatVisitor) -> list[MessageJSON]:
    messages = list(messages)
    names = sender_names(messages, visitor=visitor)
    return [message_payload(m, sender_name=names[m.pk]) for m in messages]
