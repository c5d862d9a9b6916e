"""ChatService: the only code that writes chat rows.

Each operation validates first, then writes inside one transaction, and
publishes its realtime event with ``transaction.on_commit``. Transactions are
``crm.core.writes.write_transaction``: on SQLite, writers queue in the process. Integrations (the
public API, the inbox, the sockets, the CLI, the admin) call ``chat_service``
and never touch the models' ``save()`` themselves, as the original module asks.

The operations are plain functions, one module per concern, and ``ChatService``
is the table of contents that names them all:

- ``messages``: the sequencing core (row lock, idempotency, append), sending,
  the offline reply; ``store``: its two SQL statements; ``receipts``: read marks;
- ``conversations``: opening a conversation with its gap-free chat number;
- ``visitors``: identify, touch, typed details, page views;
- ``widgets``: create, change, new key, soft delete, restore, purge;
- ``actions``: assign, pending / close / reopen, soft delete / restore of a chat;
- ``crm_links``: promote a visitor to a person, convert a chat to a lead;
- ``errors`` and ``inputs``: the refusals callers catch and the text rules.
"""

from __future__ import annotations

from crm.chat.services import (
    actions,
    conversations,
    crm_links,
    messages,
    receipts,
    visitors,
    widgets,
)
from crm.chat.services.conversations import FIRST_CHAT_NUMBER

# Kept under its old private name for bench/generate.py, which numbers chats in bulk.
from crm.chat.services.conversations import chat_number_lock_id as _chat_number_lock_id  # noqa: F401
from crm.chat.services.errors import (
    AlreadyConverted,
    ChatError,
    ConversationClosed,
    InvalidToken,
    NotAllowed,
    NotServing,
)
from crm.chat.services.messages import AUTO_REPLY_CLIENT_ID, SendResult
from crm.chat.services.visitors import SEEN_RESOLUTION
from crm.chat.services.widgets import WIDGET_FIELDS, origins_from_text

__all__ = [
    "AUTO_REPLY_CLIENT_ID",
    "FIRST_CHAT_NUMBER",
    "SEEN_RESOLUTION",
    "WIDGET_FIELDS",
    "AlreadyConverted",
    "ChatError",
    "ChatService",
    "ConversationClosed",
    "InvalidToken",
    "NotAllowed",
    "NotServing",
    "SendResult",
    "chat_service",
    "origins_from_text",
]


class ChatService:
    """Every chat write, by name. Arguments are keyword-only; each returns what changed.

    A facade rather than mixins: each operation is a module-level function whose
    imports show what it builds on (``actions`` imports the lock and append of
    ``messages``), with no ``self`` carrying hidden state between modules.
    """

    WIDGET_FIELDS = WIDGET_FIELDS

    # widgets
    create_widget = staticmethod(widgets.create_widget)
    update_widget = staticmethod(widgets.update_widget)
    regenerate_public_key = staticmethod(widgets.regenerate_public_key)
    delete_widget = staticmethod(widgets.delete_widget)
    restore_widget = staticmethod(widgets.restore_widget)
    purge_widget = staticmethod(widgets.purge_widget)

    # visitors
    identify_visitor = staticmethod(visitors.identify_visitor)
    touch_visitor = staticmethod(visitors.touch_visitor)
    update_visitor_details = staticmethod(visitors.update_visitor_details)
    record_page_view = staticmethod(visitors.record_page_view)

    # conversations and messages
    open_conversation = staticmethod(conversations.open_conversation)
    send_visitor_message = staticmethod(messages.send_visitor_message)
    send_agent_message = staticmethod(messages.send_agent_message)
    send_system_message = staticmethod(messages.send_system_message)
    mark_read = staticmethod(receipts.mark_read)

    # agent actions
    assign_conversation = staticmethod(actions.assign_conversation)
    close_conversation = staticmethod(actions.close_conversation)
    mark_pending = staticmethod(actions.mark_pending)
    reopen_conversation = staticmethod(actions.reopen_conversation)
    delete_conversation = staticmethod(actions.delete_conversation)
    restore_conversation = staticmethod(actions.restore_conversation)

    # links to the CRM core
    promote_visitor_to_person = staticmethod(crm_links.promote_visitor_to_person)
    convert_to_lead = staticmethod(crm_links.convert_to_lead)


chat_service = ChatService()
