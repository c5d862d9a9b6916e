"""Client-facing shapes of stored messages, shared by the API, the sockets and events."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from crm.chat.events import MessagePayload
from crm.chat.models import ChatMessage, ChatVisitor


def agent_display_name(user: User | None) -> str:
    if user is None:
        return "Agent"
    return user.get_full_name() or user.get_username()


def message_payload(message: ChatMessage, *, sender_name: str) -> MessagePayload:
    return MessagePayload(
        id=message.external_id,
        seq=message.seq,
        sender_type=message.sender_type,  # type: ignore[arg-type]
        sender_name=sender_name,
        body=message.body,
        client_id=message.client_id,
        internal=message.is_internal,
        created_at=message.created_at,
        read_at=message.read_at,
    )


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


def message_payloads(
    messages: Iterable[ChatMessage], *, visitor: ChatVisitor
) -> list[MessagePayload]:
    messages = list(messages)
    names = sender_names(messages, visitor=visitor)
    return [message_payload(m, sender_name=names[m.pk]) for m in messages]
