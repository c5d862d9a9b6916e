"""The sequencing core: every message of a conversation is appended here.

Rules that live here, and why together: a conversation's row lock serialises
``seq`` allocation, the idempotency check by ``client_id`` and status changes,
so ``lock_conversation``, ``send_checks`` and ``append_message`` must be used as
one unit (lock, then check, then append, all in one transaction). The other
service modules build on these primitives and never insert a ``ChatMessage``
themselves. Also here: gap-free chat numbers, opening a conversation, the three
kinds of sender (visitor, agent, system), read receipts and the offline
auto-reply, which must run under the same lock to stay at one per conversation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Exists, Max, OuterRef, Subquery, Value
from django.utils import timezone

from crm.chat import events, notifications, presence
from crm.chat.events import ConversationStatus, MessagePayload
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from crm.chat.payloads import agent_display_name, message_payload
from crm.chat.services.errors import ChatError, ConversationClosed, NotAllowed
from crm.chat.services.inputs import clean_body, clean_client_id, clean_text
from crm.conf import table_name

# client_id of the offline auto-reply: at most one per conversation.
AUTO_REPLY_CLIENT_ID = "auto:offline"
FIRST_CHAT_NUMBER = 1001


@dataclass(frozen=True)
class SendResult:
    message: ChatMessage
    # False when the client_id was seen before and the stored message is returned.
    created: bool
    # What clients are sent (the ack, the API's answer), built once here with the
    # sender's name, so callers don't query the sender again.
    payload: MessagePayload


# ------------------------------------------------------------- conversations


def open_conversation(*, visitor: ChatVisitor, subject: str = "") -> ChatConversation:
    """Return the visitor's open or pending conversation, or start a new one.

    The visitor row is locked first, so two tabs opening at once get the same
    conversation instead of two (a race the original had).
    """
    clean_subject = clean_text(subject, field="subject", max_length=255)
    with transaction.atomic():
        ChatVisitor.objects.select_for_update().filter(pk=visitor.pk).first()
        existing = (
            ChatConversation.objects.filter(visitor=visitor, deleted_at__isnull=True)
            .exclude(status=ChatConversation.STATUS_CLOSED)
            .order_by("-created_at", "-id")
            .first()
        )
        if existing is not None:
            return existing
        number = next_chat_number()
        conversation = ChatConversation(
            widget_id=visitor.widget_id,
            visitor=visitor,
            number=number,
            chat_id=f"C{number}",
            subject=clean_subject,
            status=ChatConversation.STATUS_OPEN,
        )
        conversation.full_clean(validate_unique=False)
        conversation.save()
        events.publish_on_commit(
            events.ConversationOpened(
                conversation=conversation.external_id, seq=0, chat_id=conversation.chat_id
            )
        )
    return conversation


def chat_number_lock_id() -> int:
    # A stable 31-bit key per table, so two installs sharing a database (different
    # prefixes) don't serialise on each other's lock.
    return zlib.crc32(table_name("chat_conversations").encode()) & 0x7FFFFFFF


def next_chat_number() -> int:
    """Next chat number, gap-free and unique under concurrent openers.

    PostgreSQL: a transaction-scoped advisory lock serialises allocators until
    commit, so ``max + 1`` can't be read twice. SQLite: transactions begin
    IMMEDIATE (settings), which already serialises every writer.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [chat_number_lock_id()])
    last = ChatConversation.objects.aggregate(m=Max("number"))["m"]
    return FIRST_CHAT_NUMBER if last is None else last + 1


# ------------------------------------------------------------------ senders


def send_visitor_message(
    *,
    conversation: ChatConversation,
    visitor: ChatVisitor,
    body: str,
    client_id: str | None = None,
) -> SendResult:
    """A visitor writes; writing into a closed conversation reopens it."""
    if conversation.visitor_id != visitor.pk:
        raise NotAllowed("This conversation belongs to another visitor.")
    text = clean_body(body)
    client_id = clean_client_id(client_id)
    with transaction.atomic():
        conv = lock_conversation(conversation)
        dup, wrote_before = send_checks(conv, ChatMessage.SENDER_VISITOR, visitor.pk, client_id)
        if dup:
            return SendResult(dup, False, message_payload(dup, sender_name=visitor.display_name))
        if conv.status == ChatConversation.STATUS_CLOSED:
            set_status(conv, ChatConversation.STATUS_OPEN)
            append_message(
                conv, sender_type=ChatMessage.SENDER_SYSTEM, body="The visitor reopened the chat."
            )
        first = not wrote_before
        message = append_message(
            conv,
            sender_type=ChatMessage.SENDER_VISITOR,
            sender_id=visitor.pk,
            body=text,
            client_id=client_id,
            sender_name=visitor.display_name,
        )
        if first:
            notifications.on_first_visitor_message(conv)
        auto_reply_if_offline(conv)
    sync_conversation(conversation, conv)
    return SendResult(message, True, message_payload(message, sender_name=visitor.display_name))


def auto_reply_if_offline(conv: ChatConversation) -> None:
    """One offline auto-reply per conversation when nobody can answer now.

    Runs under the conversation's row lock, so concurrent visitor sends can't
    both decide they are first (the original's check-then-insert raced).
    """
    widget = conv.widget
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
    with transaction.atomic():
        conv = lock_conversation(conversation)
        dup, _ = send_checks(conv, ChatMessage.SENDER_USER, agent.pk, client_id)
        if dup:
            return SendResult(
                dup, False, message_payload(dup, sender_name=agent_display_name(agent))
            )
        if conv.status == ChatConversation.STATUS_CLOSED:
            raise ConversationClosed("This chat is closed; reopen it to reply.")
        if conv.user_assigned_id is None:
            assign_locked(conv, agent, by=agent)
        message = append_message(
            conv,
            sender_type=ChatMessage.SENDER_USER,
            sender_id=agent.pk,
            body=text,
            client_id=client_id,
            sender_name=agent_display_name(agent),
        )
        notifications.on_agent_message(message)
    sync_conversation(conversation, conv)
    name = agent_display_name(agent)
    return SendResult(message, True, message_payload(message, sender_name=name))


def send_system_message(
    *, conversation: ChatConversation, body: str, internal: bool = False
) -> ChatMessage:
    """Append a system line (``internal``: an agents-only note) through the sequencing core.

    The product writes its own system lines inside the operations that cause
    them; this is the service operation for any other system line, so that
    tests and tools add one with a proper ``seq`` and event instead of an insert.
    """
    text = clean_body(body)
    with transaction.atomic():
        conv = lock_conversation(conversation)
        message = append_message(
            conv, sender_type=ChatMessage.SENDER_SYSTEM, body=text, internal=internal
        )
    sync_conversation(conversation, conv)
    return message


def mark_read(
    *,
    conversation: ChatConversation,
    reader: Literal["visitor", "user"],
    up_to_seq: int | None = None,
) -> int:
    """Mark the other side's messages read up to ``up_to_seq`` (default: all).

    ``reader`` is "visitor" (reads agent messages) or "user" (reads visitor
    messages). Returns how many messages changed; no event when none did.
    """
    if reader not in {ChatMessage.SENDER_VISITOR, ChatMessage.SENDER_USER}:
        raise ValidationError({"reader": "Must be 'visitor' or 'user'."}, code="invalid")
    if up_to_seq is not None and up_to_seq < 0:
        raise ValidationError({"up_to_seq": "Must not be negative."}, code="invalid")
    other = (
        ChatMessage.SENDER_USER
        if reader == ChatMessage.SENDER_VISITOR
        else ChatMessage.SENDER_VISITOR
    )
    with transaction.atomic():
        limit = conversation.last_seq if up_to_seq is None else up_to_seq
        changed = ChatMessage.objects.filter(
            conversation=conversation, sender_type=other, read_at__isnull=True, seq__lte=limit
        ).update(read_at=timezone.now())
        if changed:
            events.publish_on_commit(
                events.ReadReceipt(
                    conversation=conversation.external_id,
                    seq=conversation.last_seq,
                    reader=reader,
                    up_to_seq=limit,
                )
            )
    return changed


# ------------------------------------------- primitives, under the row lock only


def lock_conversation(conversation: ChatConversation) -> ChatConversation:
    """Lock the conversation row: it serialises seq allocation and status changes.

    ``of=("self",)``: the widget joined in must not be locked too, or every send
    on one widget would queue behind the others.
    """
    return (
        ChatConversation.objects.select_for_update(of=("self",))
        .select_related("widget")
        .get(pk=conversation.pk)
    )


def send_checks(
    conv: ChatConversation, sender_type: str, sender_id: int, client_id: str | None
) -> tuple[ChatMessage | None, bool]:
    """(the message an earlier try with this client_id stored, has this side written?)

    One statement for both, run after the lock so that (in READ COMMITTED) it sees
    what a concurrent try committed while this one waited for the row.
    """
    mine = ChatMessage.objects.filter(conversation=OuterRef("pk"), sender_type=sender_type)
    row = (
        ChatConversation.objects.filter(pk=conv.pk)
        .annotate(
            wrote=Exists(mine),
            duplicate_id=(
                Subquery(mine.filter(sender_id=sender_id, client_id=client_id).values("pk")[:1])
                if client_id
                else Value(None, output_field=BigIntegerField())
            ),
        )
        .values("wrote", "duplicate_id")
        .get()
    )
    dup = ChatMessage.objects.get(pk=row["duplicate_id"]) if row["duplicate_id"] else None
    return dup, row["wrote"]


def sync_conversation(target: ChatConversation, source: ChatConversation) -> None:
    """Copy the locked row's new state onto the caller's instance."""
    for field in ("status", "last_seq", "last_message_at", "closed_at", "user_assigned_id"):
        setattr(target, field, getattr(source, field))
    if source.user_assigned_id is None:
        target.user_assigned = None
    elif "user_assigned" in source._state.fields_cache:
        target.user_assigned = source.user_assigned


def append_message(
    conv: ChatConversation,
    *,
    sender_type: str,
    body: str,
    sender_id: int | None = None,
    client_id: str | None = None,
    internal: bool = False,
    sender_name: str | None = None,
) -> ChatMessage:
    """Insert the next message of a locked conversation and queue its event."""
    now = timezone.now()
    conv.last_seq += 1
    conv.last_message_at = now
    message = ChatMessage(
        conversation=conv,
        seq=conv.last_seq,
        sender_type=sender_type,
        sender_id=sender_id,
        body=body,
        client_id=client_id,
        is_internal=internal,
        created_at=now,
    )
    try:
        # No savepoint: a failure here aborts the caller's whole transaction anyway.
        message.save(force_insert=True)
    except IntegrityError as exc:
        # Only reachable if a writer bypassed the row lock; surface it loudly.
        raise ChatError("The message could not be stored; please retry.") from exc
    ChatConversation.objects.filter(pk=conv.pk).update(
        last_seq=conv.last_seq, last_message_at=now, updated_at=now
    )
    payload = message_payload(message, sender_name=sender_name or "System")
    events.publish_on_commit(
        events.MessageCreated(conversation=conv.external_id, seq=message.seq, message=payload)
    )
    return message


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
