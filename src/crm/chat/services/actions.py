"""Agent actions on a conversation: assign, pending / close / reopen, delete / restore.

Rules that live here: each action takes the conversation's row lock (the same
one that sequences messages) and leaves a system line, so the transcript and
the status can never disagree; setting a status the chat already has is
refused, assigning it to whom it already belongs is a no-op; only active agents
can be assigned. Deletion is soft and restorable: the deleted chat leaves the
inbox and the widget, and ``revocation.conversation_changed`` makes open
sockets drop it at commit instead of at their next reconnect. The notes about
deletion are internal (agents only).
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils import timezone

from crm.chat import revocation
from crm.chat.events import ConversationStatus
from crm.chat.models import ChatConversation, ChatMessage
from crm.chat.payloads import agent_display_name
from crm.chat.services.errors import NotAllowed
from crm.chat.services.messages import (
    append_message,
    assign_locked,
    set_status,
)
from crm.chat.services.store import lock_conversation, sync_conversation
from crm.core.writes import write_transaction


def assign_conversation(
    *,
    conversation: ChatConversation,
    agent: User | None,
    by: User,
) -> ChatConversation:
    """Assign to ``agent`` (``None`` unassigns), leaving a system message."""
    if agent is not None and not agent.is_active:
        raise NotAllowed("Chats can only be assigned to active agents.")
    with write_transaction():
        conv = lock_conversation(conversation)
        if conv.user_assigned_id == (agent.pk if agent else None):
            return conv
        assign_locked(conv, agent, by=by)
    sync_conversation(conversation, conv)
    return conversation


def close_conversation(*, conversation: ChatConversation, by: User | None) -> ChatConversation:
    return _change_status(conversation, ChatConversation.STATUS_CLOSED, "This chat was closed.", by)


def mark_pending(*, conversation: ChatConversation, by: User | None) -> ChatConversation:
    return _change_status(
        conversation, ChatConversation.STATUS_PENDING, "This chat was marked pending.", by
    )


def reopen_conversation(*, conversation: ChatConversation, by: User | None) -> ChatConversation:
    return _change_status(conversation, ChatConversation.STATUS_OPEN, "This chat was reopened.", by)


def delete_conversation(*, conversation: ChatConversation, by: User) -> ChatConversation:
    """Soft-delete: gone from the inbox and the widget, restorable by an agent."""
    with write_transaction():
        conv = lock_conversation(conversation)
        if conv.deleted_at is not None:
            raise NotAllowed(f"Chat {conv.chat_id} is already deleted.")
        conv.deleted_at = timezone.now()
        ChatConversation.objects.filter(pk=conv.pk).update(deleted_at=conv.deleted_at)
        # Open sockets of the visitor (and of agents who may not see deleted
        # chats) lose it now, not when they next reconnect.
        revocation.conversation_changed(conv.external_id, reason="conversation deleted")
        append_message(
            conv,
            sender_type=ChatMessage.SENDER_SYSTEM,
            body=f"Deleted by {agent_display_name(by)}.",
            internal=True,
        )
    conversation.deleted_at = conv.deleted_at
    sync_conversation(conversation, conv)
    return conversation


def restore_conversation(*, conversation: ChatConversation, by: User) -> ChatConversation:
    """Undo ``delete_conversation``; no recheck is sent, restoring only widens access."""
    with write_transaction():
        conv = lock_conversation(conversation)
        if conv.deleted_at is None:
            raise NotAllowed(f"Chat {conv.chat_id} is not deleted.")
        ChatConversation.objects.filter(pk=conv.pk).update(deleted_at=None)
        append_message(
            conv,
            sender_type=ChatMessage.SENDER_SYSTEM,
            body=f"Restored by {agent_display_name(by)}.",
            internal=True,
        )
    conversation.deleted_at = None
    sync_conversation(conversation, conv)
    return conversation


def _change_status(
    conversation: ChatConversation,
    status: ConversationStatus,
    note: str,
    by: User | None,
) -> ChatConversation:
    with write_transaction():
        conv = lock_conversation(conversation)
        if conv.status == status:
            raise NotAllowed(f"Chat {conv.chat_id} is already {conv.get_status_display().lower()}.")
        set_status(conv, status)
        suffix = f" by {agent_display_name(by)}" if by is not None else ""
        append_message(conv, sender_type=ChatMessage.SENDER_SYSTEM, body=note[:-1] + suffix + ".")
    sync_conversation(conversation, conv)
    return conversation
