"""The inbox list's page: its rows read as plain values, ready to print.

The list is the most fetched page of the product. Reading it as values (no model
instances for the conversation, visitor, widget and agent of 25 rows) and handing
the template strings instead of lookups halves its cost; the preview comes in the
same statement, and no statement counts the whole tab.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce, Substr
from django.utils import timezone
from django.utils.safestring import SafeString

from crm.chat import presence
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from crm.chat.search import Search, snippets
from crm.chat.selectors import unread_of_row

PREVIEW_CHARS = 80


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One line of the inbox list: plain values, ready to print."""

    id: int
    external_id: UUID
    chat_id: str
    status: str
    unread_count: int
    visitor_name: str
    visitor_email: str
    country_code: str
    online: bool
    preview: str
    preview_sender: str
    widget_name: str
    widget_deleted: bool
    assignee: str
    last_message_at: datetime | None
    # With a search: the newest matching message, highlighted (escaped, <mark>).
    match_seq: int | None = None
    match: SafeString | None = None


@dataclass(frozen=True, slots=True)
class InboxPage:
    """A page of the inbox without a total count: counting a whole tab on every
    request grows with the tab (the status badges give capped totals instead)."""

    rows: list[InboxRow]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def inbox_page(
    conversations: QuerySet[ChatConversation],
    *,
    number: int,
    per_page: int,
    search: Search | None = None,
) -> InboxPage:
    """Page ``number`` of ``conversations`` (from ``conversation_list``), with the newest
    visitor or agent message of each row, in one statement; with ``search`` (the one
    ``conversations`` was narrowed by), the ids first (``_found_rows``) and the newest
    message of each row that matched, highlighted (``search.snippets``).

    One row more than the page tells whether a next page exists. A page beyond the
    end (a stale link after chats were closed) answers the last page, as Django's
    ``Paginator.get_page`` does; only that case counts the rows.
    """
    number = max(1, number)
    read = _found_rows if search is not None else _inbox_rows
    rows = read(conversations, offset=(number - 1) * per_page, limit=per_page + 1)
    if not rows and number > 1:
        number = max(1, -(-conversations.count() // per_page))
        rows = read(conversations, offset=(number - 1) * per_page, limit=per_page + 1)
    has_next = len(rows) > per_page
    rows = rows[:per_page]
    if search is not None:
        hits = snippets([row.id for row in rows], search)
        rows = [
            replace(row, match_seq=hits[row.id][0], match=hits[row.id][1])
            if row.id in hits
            else row
            for row in rows
        ]
    return InboxPage(rows=rows, number=number, has_next=has_next)


def _found_rows(
    conversations: QuerySet[ChatConversation], *, offset: int, limit: int
) -> list[InboxRow]:
    """A search's page in two small statements: the ids it finds, then their rows.

    One statement with both the search's subqueries and the row's (unread count,
    preview, joins) took PostgreSQL longer to plan than to run; a search that finds
    nothing now stops after the first.
    """
    ids = list(conversations.values_list("pk", flat=True)[offset : offset + limit])
    if not ids:
        return []
    by_id = ChatConversation.objects.filter(pk__in=ids).annotate(
        unread_count=Coalesce(unread_of_row(), 0)
    )
    place = {pk: i for i, pk in enumerate(ids)}
    return sorted(_inbox_rows(by_id, offset=0, limit=len(ids)), key=lambda row: place[row.id])


def _shortened(text: str) -> str:
    """At most ``PREVIEW_CHARS`` characters, the last one "…" when cut. (Django's
    ``Truncator`` costs ~60 µs per call, mostly translating its ellipsis.)"""
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _inbox_rows(
    conversations: QuerySet[ChatConversation], *, offset: int, limit: int
) -> list[InboxRow]:
    # System messages and internal notes ("· Visitor linked to person …", the offline
    # auto-reply) are not what anyone said, so they never stand for the chat. The
    # correlated subqueries run for the page's rows only (after ORDER BY … LIMIT),
    # each reading the (conversation, seq) index backwards to the first that qualifies.
    said = ChatMessage.objects.filter(
        conversation=OuterRef("pk"),
        sender_type__in=(ChatMessage.SENDER_VISITOR, ChatMessage.SENDER_USER),
        is_internal=False,
    ).order_by("-seq")
    values = conversations.annotate(
        preview_body=Subquery(
            said.annotate(cut=Substr("body", 1, PREVIEW_CHARS + 1)).values("cut")[:1]
        ),
        preview_sender=Subquery(said.values("sender_type")[:1]),
    ).values_list(
        "id",
        "external_id",
        "chat_id",
        "status",
        "unread_count",
        "visitor_id",
        "visitor__name",
        "visitor__email",
        "visitor__country_code",
        "visitor__last_seen_at",
        "preview_body",
        "preview_sender",
        "widget__name",
        "widget__deleted_at",
        "user_assigned__first_name",
        "user_assigned__last_name",
        "user_assigned__username",
        "last_message_at",
    )[offset : offset + limit]
    now = timezone.now()
    rows = []
    for (
        pk, external_id, chat_id, status, unread, visitor_id, name, email, country, seen, body, sender,
        widget_name, widget_deleted_at, first, last, username, last_message_at,
    ) in values:  # fmt: skip
        rows.append(
            InboxRow(
                id=pk,
                external_id=external_id,
                chat_id=chat_id,
                status=status,
                unread_count=unread,
                visitor_name=ChatVisitor.name_for_display(visitor_id, name),
                visitor_email=email or "",
                country_code=country or "",
                online=presence.visitor_is_online(seen, now=now),
                preview=_shortened(body or ""),
                preview_sender=sender or "",
                widget_name=widget_name,
                widget_deleted=widget_deleted_at is not None,
                assignee=(f"{first} {last}".strip() or username) if username else "",
                last_message_at=last_message_at,
            )
        )
    return rows
