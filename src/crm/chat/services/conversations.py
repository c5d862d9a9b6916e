"""Opening a conversation, with its gap-free chat number (C1001, C1002, …)."""

from __future__ import annotations

import zlib

from django.db import connection
from django.db.models import Max

from crm.chat import events
from crm.chat.models import ChatConversation, ChatVisitor
from crm.chat.services.inputs import clean_text
from crm.conf import table_name
from crm.core.writes import write_transaction

FIRST_CHAT_NUMBER = 1001


def open_conversation(*, visitor: ChatVisitor, subject: str = "") -> ChatConversation:
    """Return the visitor's open or pending conversation, or start a new one.

    The visitor row is locked first, so two tabs opening at once get the same
    conversation instead of two (a race the original had).
    """
    clean_subject = clean_text(subject, field="subject", max_length=255)
    with write_transaction():
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
