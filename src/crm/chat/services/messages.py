"""The sequencing core: every message of a conversation is appended here.

Rules that live here, and why together: a conversation's row lock serialises
``seq`` allocation, idempotency by ``client_id`` and status changes. Every
message is written by ``_append``: the seq allocation (which takes the row lock)
and the insert, two statements in ``store``, in the caller's transaction. A send
in the common case is just that; a send that must change something first (reopen
a closed chat, assign an unassigned one) finds the fast allocation refused, takes
the row lock with ``lock_conversation`` and changes it, all in one transaction. A
retried ``client_id`` is caught by the unique index and rolls the whole send back
(``_Duplicate``), returning the stored message. The other service modules build on
these primitives and never insert a ``ChatMessage`` themselves. Also here: the
three kinds of sender (visitor, agent, system), read receipts and the offline
auto-reply, which must run under the same lock to stay at one per conversation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Required, TypedDict, Unpack

from django.contrib.auth.models import User
from django.db import IntegrityError, connection
from django.utils import timezone

from crm.chat import events, notifications, presence
from crm.chat.events import ConversationStatus
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatWidget
from crm.chat.payloads import MessageJSON, agent_display_name, message_payload
from crm.chat.services import store
from crm.chat.services.errors import ChatError, ConversationClosed, NotAllowed, NotServing
from crm.chat.services.inputs import clean_body, clean_client_id
from crm.chat.services.store import lock_conversation, sync_conversation
from crm.chat.widget_settings import widget_settings
from crm.core.writes import write_transaction

# client_id of the offline auto-reply: at most one per conversation.
AUTO_REPLY_CLIENT_ID = "auto:offline"


@dataclass(frozen=True)
class SendResult:
    message: ChatMessage
    # False when the client_id was seen before and the stored message is returned.
    created: bool
    # What clients are sent (the ack, the API's answer), built once here with the
    # sender's name, so callers don't query the sender again.
    payload: MessageJSON


@dataclass(frozen=True, slots=True)
class Appended:
    message: ChatMessage
    payload: MessageJSON
    # Whether this sender type had written to the conversation before (if asked).
    wrote_before: bool


class _Sender(TypedDict):
    """Who writes a message, as the store's functions take it (keyword arguments)."""

    sender_type: str
    sender_id: int


class NewMessage(TypedDict, total=False):
    """What a new message is made of (``append_message``'s keyword arguments)."""

    sender_type: Required[str]
    body: Required[str]
    sender_id: int | None
    client_id: str | None
    internal: bool
    sender_name: str | None


class _Duplicate(Exception):
    """Raised inside a send's transaction: its client_id is stored already."""


# ------------------------------------------------------------------ senders


def send_visitor_message(
    *,
    conversation: ChatConversation,
    visitor: ChatVisitor,
    body: str,
    client_id: str | None = None,
    widget_key: str | None = None,
) -> SendResult:
    """A visitor writes; writing into a closed conversation reopens it.

    ``widget_key``: the key the visitor's socket connected with. The write is then
    refused (``NotServing``) when the widget no longer serves under it or the chat
    was deleted, read in the very statement that allocates the seq.
    """
    if conversation.visitor_id != visitor.pk:
        raise NotAllowed("This conversation belongs to another visitor.")
    text = clean_body(body)
    client_id = clean_client_id(client_id)
    name = visitor.display_name
    sender: _Sender = {"sender_type": ChatMessage.SENDER_VISITOR, "sender_id": visitor.pk}

    def write() -> Appended:
        appended = _append(
            conversation, **sender, body=text, client_id=client_id, sender_name=name,
            open_only=True, wrote_before=True, widget_key=widget_key,
        )  # fmt: skip
        if appended is None:  # closed (or not serving): look under the row lock
            conv = lock_conversation(conversation)
            if widget_key is not None and not _serving(conv, widget_key):
                raise NotServing("This chat widget or conversation is no longer available.")
            if conv.status == ChatConversation.STATUS_CLOSED:
                set_status(conv, ChatConversation.STATUS_OPEN)
                append_message(
                    conv,
                    sender_type=ChatMessage.SENDER_SYSTEM,
                    body="The visitor reopened the chat.",
                )
            appended = _append(
                conv, **sender, body=text, client_id=client_id, sender_name=name,
                wrote_before=True,
            )  # fmt: skip
            assert appended is not None
            sync_conversation(conversation, conv)
        if not appended.wrote_before:
            notifications.on_first_visitor_message(conversation)
        auto_reply_if_offline(conversation)
        return appended

    return _send(conversation, sender, client_id, name, write)


def _send(
    conversation: ChatConversation,
    sender: _Sender,
    client_id: str | None,
    name: str,
    write: Callable[[], Appended],
) -> SendResult:
    """Run a send's ``write`` in one write transaction.

    A ``client_id`` stored before rolls the whole send back and returns the stored
    message; any failure leaves the caller's conversation instance as it was, since
    the transaction rolled back.
    """
    before = _state_of(conversation)
    try:
        with write_transaction():
            appended = write()
    except _Duplicate:
        _restore_state(conversation, before)
        return _stored(conversation, **sender, client_id=client_id, sender_name=name)
    except BaseException:
        _restore_state(conversation, before)
        raise
    return SendResult(appended.message, True, appended.payload)


def auto_reply_if_offline(conv: ChatConversation) -> None:
    """One offline auto-reply per conversation when nobody can answer now.

    Runs under the conversation's row lock, so concurrent visitor sends can't
    both decide they are first (the original's check-then-insert raced). The
    widget's settings come from the process's short cache: this runs per message.
    """
    widget = widget_settings(conv.widget_id)
    if not widget.offline_message:
        return
    if widget.is_within_business_hours() and presence.agents_online(widget) > 0:
        return
    if conv.messages.filter(
        sender_type=ChatMessage.SENDER_SYSTEM, client_id=AUTO_REPLY_CLIENT_ID
    ).exists():
        return
    append_message(
        conv,
        sender_type=ChatMessage.SENDER_SYSTEM,
        body=widget.offline_message,
        client_id=AUTO_REPLY_CLIENT_ID,
    )


def send_agent_message(
    *,
    conversation: ChatConversation,
    agent: User,
    body: str,
    client_id: str | None = None,
) -> SendResult:
    """An agent replies; an unassigned conversation becomes theirs (as in the original)."""
    if not agent.is_active:
        raise NotAllowed("Inactive agents cannot reply.")
    text = clean_body(body)
    client_id = clean_client_id(client_id)
    name = agent_display_name(agent)
    sender: _Sender = {"sender_type": ChatMessage.SENDER_USER, "sender_id": agent.pk}

    def write() -> Appended:
        appended = _append(
            conversation, **sender, body=text, client_id=client_id, sender_name=name,
            open_only=True, assigned_only=True,
        )  # fmt: skip
        if appended is None:  # closed or unassigned: look under the row lock
            conv = lock_conversation(conversation)
            if conv.status == ChatConversation.STATUS_CLOSED:
                if client_id and _stored_id(conv, **sender, client_id=client_id):
                    raise _Duplicate()  # a retry of a reply sent before it closed
                raise ConversationClosed("This chat is closed; reopen it to reply.")
            if conv.user_assigned_id is None:
                assign_locked(conv, agent, by=agent)
            appended = _append(conv, **sender, body=text, client_id=client_id, sender_name=name)
            assert appended is not None
            sync_conversation(conversation, conv)
        notifications.on_agent_message(appended.message)
        return appended

    return _send(conversation, sender, client_id, name, write)


def send_system_message(
    *, conversation: ChatConversation, body: str, internal: bool = False
) -> ChatMessage:
    """Append a system line (``internal``: an agents-only note) through the sequencing core.

    The product writes its own system lines inside the operations that cause
    them; this is the service operation for any other system line, so that
    tests and tools add one with a proper ``seq`` and event instead of an insert.
    """
    text = clean_body(body)
    with write_transaction():
        conv = lock_conversation(conversation)
        message = append_message(
            conv, sender_type=ChatMessage.SENDER_SYSTEM, body=text, internal=internal
        )
    sync_conversation(conversation, conv)
    return message


# ------------------------------------------- primitives, under the row lock only


def _serving(conv: ChatConversation, widget_key: str) -> bool:
    """Whether a locked conversation still takes messages under this widget key."""
    return (
        conv.deleted_at is None
        and ChatWidget.objects.filter(
            pk=conv.widget_id, public_key=widget_key, is_active=True, deleted_at__isnull=True
        ).exists()
    )


def _stored_id(
    conv: ChatConversation, *, sender_type: str, sender_id: int, client_id: str
) -> int | None:
    return (
        ChatMessage.objects.filter(
            conversation_id=conv.pk,
            sender_type=sender_type,
            sender_id=sender_id,
            client_id=client_id,
        )
        .values_list("pk", flat=True)
        .first()
    )


def _stored(
    conversation: ChatConversation,
    *,
    sender_type: str,
    sender_id: int,
    client_id: str | None,
    sender_name: str,
) -> SendResult:
    """The message an earlier try with this client_id stored."""
    message = ChatMessage.objects.get(
        conversation_id=conversation.pk,
        sender_type=sender_type,
        sender_id=sender_id,
        client_id=client_id,
    )
    return SendResult(message, False, message_payload(message, sender_name=sender_name))


_STATE_FIELDS = ("status", "last_seq", "last_message_at", "closed_at", "user_assigned_id")


def _state_of(conversation: ChatConversation) -> tuple[object, ...]:
    return tuple(getattr(conversation, field) for field in _STATE_FIELDS)


def _restore_state(conversation: ChatConversation, state: tuple[object, ...]) -> None:
    """Undo what a rolled-back send wrote onto the caller's instance."""
    for field, value in zip(_STATE_FIELDS, state, strict=True):
        setattr(conversation, field, value)


def _append(
    conv: ChatConversation,
    *,
    open_only: bool = False,
    assigned_only: bool = False,
    wrote_before: bool = False,
    widget_key: str | None = None,
    **new: Unpack[NewMessage],
) -> Appended | None:
    """Allocate the next seq and insert the message; queue its event for the commit.

    None when ``open_only`` / ``assigned_only`` refused the allocation (nothing
    written). Raises ``_Duplicate`` when the client_id is stored already: the
    caller's transaction must then roll back, which takes the seq back with it.
    """
    now = timezone.now()
    allocated = store.allocate_seq(
        conv.pk, now, open_only=open_only, assigned_only=assigned_only, widget_key=widget_key
    )
    if allocated is None:
        return None
    external_id = uuid.uuid4()
    sender_type, body = new["sender_type"], new["body"]
    sender_id, client_id = new.get("sender_id"), new.get("client_id")
    internal = new.get("internal", False)
    try:
        row = store.insert_message(
            conversation_pk=conv.pk, seq=allocated.seq, sender_type=sender_type,
            sender_id=sender_id, body=body, client_id=client_id, internal=internal,
            created_at=now, external_id=external_id, wrote_before=wrote_before,
        )  # fmt: skip
    except IntegrityError as exc:
        # Only reachable if a writer bypassed the row lock; surface it loudly.
        raise ChatError("The message could not be stored; please retry.") from exc
    if row is None:
        raise _Duplicate()
    conv.last_seq, conv.last_message_at = allocated.seq, now
    conv.status = allocated.status
    conv.user_assigned_id = allocated.user_assigned_id
    message = ChatMessage(
        id=row[0], external_id=external_id, conversation=conv, seq=allocated.seq,
        sender_type=sender_type, sender_id=sender_id, body=body, client_id=client_id,
        is_internal=internal, created_at=now,
    )  # fmt: skip
    message._state.adding, message._state.db = False, connection.alias
    payload = message_payload(message, sender_name=new.get("sender_name") or "System")
    events.publish_on_commit(events.message_event(conv.external_id, payload))
    return Appended(message, payload, row[1])


def append_message(conv: ChatConversation, **new: Unpack[NewMessage]) -> ChatMessage:
    """Append a message to a locked conversation (system lines, actions)."""
    try:
        appended = _append(conv, **new)
    except _Duplicate as exc:
        raise ChatError("The message could not be stored; please retry.") from exc
    assert appended is not None  # an unconditional allocation always finds the row
    return appended.message


def set_status(conv: ChatConversation, status: ConversationStatus) -> None:
    """Change a locked conversation's status; the caller appends the system line next."""
    conv.status = status
    conv.closed_at = timezone.now() if status == ChatConversation.STATUS_CLOSED else None
    ChatConversation.objects.filter(pk=conv.pk).update(status=conv.status, closed_at=conv.closed_at)
    events.publish_on_commit(
        events.StatusChanged(
            conversation=conv.external_id,
            seq=conv.last_seq + 1,  # the system message that follows carries this seq
            status=status,
        )
    )


def assign_locked(conv: ChatConversation, agent: User | None, *, by: User) -> None:
    """(Un)assign a locked conversation with its system line; here because a reply assigns."""
    conv.user_assigned = agent
    ChatConversation.objects.filter(pk=conv.pk).update(user_assigned=agent)
    if agent is None:
        body = f"{agent_display_name(by)} unassigned the chat."
    elif agent.pk == by.pk:
        body = f"{agent_display_name(agent)} joined the chat."
    else:
        body = f"{agent_display_name(by)} assigned the chat to {agent_display_name(agent)}."
    append_message(conv, sender_type=ChatMessage.SENDER_SYSTEM, body=body)
    events.publish_on_commit(
        events.Assigned(
            conversation=conv.external_id,
            seq=conv.last_seq,
            agent_id=agent.pk if agent else None,
            agent_name=agent_display_name(agent) if agent else None,
        )
    )
