"""Read receipts: one side marks the other side's messages read.

Not under the conversation's row lock: marking read changes no seq and may
race harmlessly with a send (a message committed after ``up_to_seq`` was read
simply stays unread until the next receipt).
"""

from __future__ import annotations

from typing import Literal

from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.chat import events
from crm.chat.models import ChatConversation, ChatMessage
from crm.core.writes import write_transaction


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
    with write_transaction():
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
