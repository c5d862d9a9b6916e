"""Read queries of the chat module.

Access scoping is a required argument of every agent-facing read, so an
unscoped query can't be written by accident. Selectors return querysets or
``None``; views decide what a missing row means (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, User
from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from crm.chat.models import (
    ChatConversation,
    ChatMessage,
    ChatVisitor,
    ChatVisitorPageView,
    ChatWidget,
    hash_token,
)
from crm.chat.search import Search, matching
from crm.core.compiled import CompiledRow, CompiledValues

Agent = User | AnonymousUser


# --------------------------------------------------------------------- public side
#
# Every widget request (HTTP send, poll, page view) and socket resolves the widget, the
# visitor and the conversation, and answers with the conversation's state: those four
# statements are compiled once (``crm.core.compiled``), as their shape never changes.

_widget_by_key: CompiledRow[ChatWidget] = CompiledRow(
    lambda key: ChatWidget.objects.filter(public_key=key, is_active=True, deleted_at__isnull=True)[
        :1
    ],
    key=str,
)
_visitor_by_token: CompiledRow[ChatVisitor] = CompiledRow(
    lambda widget, token: ChatVisitor.objects.filter(widget_id=widget, visitor_token=token)[:1],
    widget=int,
    token=str,
)
_visitor_conversation: CompiledRow[ChatConversation] = CompiledRow(
    lambda visitor, external_id: ChatConversation.objects.filter(
        visitor_id=visitor, external_id=external_id, deleted_at__isnull=True
    )[:1],
    visitor=int,
    external_id=UUID,
)


def widget_by_public_key(*, public_key: str) -> ChatWidget | None:
    """The active, not deleted widget with this key.

    Inactive, deleted and unknown keys look the same: the loader, the iframe page,
    the JSON API and new sockets all resolve the widget here, so a deleted widget
    stops serving everywhere at once (and serves again, same key, when restored).
    """
    if not public_key or len(public_key) > 64:
        return None
    return _widget_by_key.get(key=public_key)


def visitor_by_token(*, widget: ChatWidget, token: str) -> ChatVisitor | None:
    if not token or len(token) > 128:
        return None
    return _visitor_by_token.get(widget=widget.pk, token=hash_token(token))


def visitor_current_conversation(*, visitor: ChatVisitor) -> ChatConversation | None:
    """The visitor's newest conversation, closed or not, so a reload shows its history."""
    return (
        visitor.conversations.filter(deleted_at__isnull=True).order_by("-created_at", "-id").first()
    )


def visitor_conversation_get(*, visitor: ChatVisitor, external_id: UUID) -> ChatConversation | None:
    """A conversation of this visitor only: another visitor's id finds nothing."""
    return _visitor_conversation.get(visitor=visitor.pk, external_id=external_id)


def messages_since(
    *, conversation: ChatConversation, since: int = 0, include_internal: bool, limit: int = 500
) -> QuerySet[ChatMessage]:
    """Messages with ``seq > since`` in seq order: the polling and resume query."""
    qs = ChatMessage.objects.filter(conversation=conversation, seq__gt=since)
    if not include_internal:
        qs = qs.filter(is_internal=False)
    return qs.order_by("seq")[:limit]


def agent_messages_read_up_to(*, conversation: ChatConversation) -> int:
    """Highest seq of agent messages the visitor has read (the inbox's "Read")."""
    return (
        ChatMessage.objects.filter(
            conversation=conversation, sender_type="user", read_at__isnull=False
        ).aggregate(m=Max("seq"))["m"]
        or 0
    )


@dataclass(frozen=True, slots=True)
class VisitorSideState:
    """What the widget shows of its conversation beside the messages."""

    status: str
    last_seq: int
    read_up_to: int  # highest seq of the visitor's messages an agent has read
    unread: int  # agent messages the visitor hasn't read


def _side_state_query(conversation: int) -> QuerySet:
    read = (
        ChatMessage.objects.filter(
            conversation=OuterRef("pk"), sender_type="visitor", read_at__isnull=False
        )
        .order_by("-seq")
        .values("seq")[:1]
    )
    return (
        ChatConversation.objects.filter(pk=conversation)
        .annotate(
            read_up_to=Coalesce(Subquery(read), 0),
            unread=Coalesce(unread_of_row(ChatMessage.SENDER_USER), 0),
        )
        .values("status", "last_seq", "read_up_to", "unread")[:1]
    )


_side_state = CompiledValues(_side_state_query, conversation=int)


def visitor_side_state(*, conversation: ChatConversation) -> VisitorSideState | None:
    """The conversation's row as it is now, with its read mark and unread count
    (None once the row is gone: purged since the caller read it).

    One statement (two indexed scalar subqueries on the row): every widget poll,
    HTTP send and socket ``ready`` answers with it, so it used to be three.
    """
    row = _side_state.get(conversation=conversation.pk)
    return None if row is None else VisitorSideState(**row)


# ---------------------------------------------------------------------- agent side


def can_see_all(agent: Agent) -> bool:
    return agent.has_perm("crm_chat.view_all_chats")


def visible_conversations(
    *, agent: Agent, include_deleted: bool = False
) -> QuerySet[ChatConversation]:
    """Every conversation this agent may open.

    Agents without ``view_all_chats`` see, on the widgets of their teams (and widgets
    without a team), the unassigned conversations (to pick them up) and their own.
    Soft-deleted ones only when asked for, and only to agents who may delete.
    """
    if not agent.is_authenticated or not agent.has_perm("crm_chat.view_chat"):
        return ChatConversation.objects.none()
    qs = ChatConversation.objects.all()
    if not (include_deleted and agent.has_perm("crm_chat.delete_chat")):
        qs = qs.filter(deleted_at__isnull=True)
    if not can_see_all(agent):
        qs = qs.filter(
            Q(user_assigned__isnull=True) | Q(user_assigned=agent.pk),
            Q(widget__team__isnull=True) | Q(widget__team__members=agent.pk),
        )
    return qs


def conversation_list(
    *,
    agent: Agent,
    status: str | None = ChatConversation.STATUS_OPEN,
    assigned: str | int | None = None,
    widget_id: int | None = None,
    search: str = "",
) -> QuerySet[ChatConversation]:
    """The inbox: one status tab, filtered, newest activity first, with unread counts.

    ``assigned`` is "me", "unassigned" or an agent id. Unread counts come from a
    correlated subquery, not a join + GROUP BY: PostgreSQL then evaluates it only for
    the page's rows (after ORDER BY … LIMIT) instead of counting every message of the
    tab, so a page costs the same at 1k and 100k conversations.
    """
    qs = visible_conversations(agent=agent, include_deleted=status == "deleted")
    if status == "deleted":
        qs = qs.filter(deleted_at__isnull=False)
    elif status:
        qs = qs.filter(status=status)
    if assigned == "me":
        qs = qs.filter(user_assigned=agent.pk)
    elif assigned == "unassigned":
        qs = qs.filter(user_assigned__isnull=True)
    elif isinstance(assigned, int):
        qs = qs.filter(user_assigned=assigned)
    if widget_id:
        qs = qs.filter(widget_id=widget_id)
    qs = qs.select_related("visitor", "widget", "user_assigned")
    qs = qs.annotate(unread_count=Coalesce(unread_of_row(), 0)).order_by("-last_message_at", "-id")
    if found := Search.parse(search):
        qs = matching(qs, found)
    return qs


def unread_of_row(sender_type: str = ChatMessage.SENDER_VISITOR) -> Subquery:
    """Unread messages of one side in the outer row's conversation (the unread index):
    the visitor's for the inbox, the agents' for the widget."""
    return Subquery(
        ChatMessage.objects.filter(
            conversation=OuterRef("pk"), sender_type=sender_type, read_at__isnull=True
        )
        .order_by()
        .values("conversation")
        .annotate(n=Count("id"))
        .values("n")
    )


STATUS_COUNT_CAP = 1000


def status_counts(*, agent: Agent) -> dict[str, int]:
    """Conversations per status tab, each counted up to ``STATUS_COUNT_CAP`` (+1).

    A capped count reads at most that many entries of the (status, last_message_at)
    index, so the tabs cost the same with 1k or 1M conversations; beyond the cap
    the badge says "1000+". The three capped counts are scalar subqueries of one
    statement (the ORM's own SQL for each): one round trip instead of three on
    every inbox page.
    """
    visible = visible_conversations(agent=agent).order_by()
    statuses = [status for status, _ in ChatConversation.STATUSES]
    parts: list[str] = []
    params: list[Any] = []
    for i, status in enumerate(statuses):
        capped = visible.filter(status=status).values("pk")[: STATUS_COUNT_CAP + 1]
        sql, sql_params = capped.query.sql_with_params()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS capped_{i})")
        params.extend(sql_params)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        row = cursor.fetchone()
    return dict(zip(statuses, (int(n) for n in row), strict=True))


def unread_total(*, agent: Agent) -> int:
    """Unread visitor messages across open conversations: the sidebar badge."""
    return ChatMessage.objects.filter(
        conversation__in=visible_conversations(agent=agent).exclude(status="closed"),
        sender_type="visitor",
        read_at__isnull=True,
    ).count()


def latest_activity(*, agent: Agent) -> str:
    """A marker that changes whenever any visible conversation changes (list polling)."""
    row = visible_conversations(agent=agent).aggregate(m=Max("updated_at"), n=Count("id"))
    return f"{row['m'].isoformat() if row['m'] else ''}/{row['n']}"


def conversation_get(*, agent: Agent, external_id: UUID) -> ChatConversation | None:
    """One conversation the agent may open (a deleted one only if they may restore it)."""
    return (
        visible_conversations(agent=agent, include_deleted=True)
        .select_related("visitor", "visitor__person", "widget", "user_assigned", "lead")
        .filter(external_id=external_id)
        .first()
    )


def conversation_for_socket(*, agent: Agent, external_id: UUID) -> ChatConversation | None:
    """``conversation_get`` for the agent socket's per-frame check: the same rule,
    only the visitor joined in (the socket needs no widget, person, lead or
    assignee), no ordering: a lighter statement, run before every write."""
    rows = (
        visible_conversations(agent=agent, include_deleted=True)
        .select_related("visitor")
        .filter(external_id=external_id)
        .order_by()[:1]
    )
    return next(iter(rows), None)


def visitor_page_views(*, visitor: ChatVisitor, limit: int = 50) -> QuerySet[ChatVisitorPageView]:
    """The visitor's page trail, newest first."""
    return visitor.page_views.order_by("-viewed_at", "-id")[:limit]


def visitor_other_conversations(
    *, agent: Agent, conversation: ChatConversation
) -> QuerySet[ChatConversation]:
    return (
        visible_conversations(agent=agent)
        .filter(visitor_id=conversation.visitor_id)
        .exclude(pk=conversation.pk)
        .order_by("-created_at")
    )


def chat_agents() -> QuerySet[User]:
    """Active users who can open chats: the people a chat may be assigned to.

    Two ``EXISTS`` over the permission tables rather than a join of the user, group
    and permission tables with ``OR``: PostgreSQL spent longer planning the join
    (~2 ms) than running it, on every inbox and conversation page.
    """
    User = get_user_model()
    view_chat = {
        "permission__codename": "view_chat",
        "permission__content_type__app_label": "crm_chat",
    }
    via_group = Group.permissions.through.objects.filter(group__user=OuterRef("pk"), **view_chat)
    direct = User.user_permissions.through.objects.filter(user=OuterRef("pk"), **view_chat)
    return (
        User.objects.filter(
            Q(is_superuser=True) | Exists(via_group) | Exists(direct), is_active=True
        )
        .only("id", "username", "first_name", "last_name")
        .order_by("first_name", "username")
    )


def widget_choices() -> QuerySet[ChatWidget]:
    """Widgets for the inbox's filter: names only, no counting.

    Deleted widgets are listed too (the template marks them): their conversations
    stay in the inbox and must remain filterable.
    """
    return ChatWidget.objects.only("id", "name", "deleted_at").order_by("name", "id")


def widget_list(*, deleted: bool | None = False) -> QuerySet[ChatWidget]:
    """Widgets with their team and conversation count (the settings list).

    ``deleted``: False (the default) for live widgets only, True for soft-deleted
    ones only, None for both; so a caller that forgets the argument can't edit or
    re-key a deleted widget by accident.

    The count is a correlated subquery per widget (an index-only count on
    ``widget_id``), not a join + GROUP BY over every conversation.
    """
    counts = (
        ChatConversation.objects.filter(widget=OuterRef("pk"))
        .order_by()
        .values("widget")
        .annotate(n=Count("id"))
        .values("n")
    )
    qs = ChatWidget.objects.all()
    if deleted is not None:
        qs = qs.filter(deleted_at__isnull=not deleted)
    return (
        qs.select_related("team")
        .annotate(conversation_count=Coalesce(Subquery(counts), 0))
        .order_by("name", "id")
    )


@dataclass(frozen=True)
class WidgetRows:
    """What purging a widget destroys (shown on the purge page, returned by the purge)."""

    visitors: int
    conversations: int
    messages: int


def widget_rows(*, widget: ChatWidget) -> WidgetRows:
    """Count the visitors, conversations (deleted ones too) and messages of a widget."""
    return WidgetRows(
        visitors=ChatVisitor.objects.filter(widget=widget).count(),
        conversations=ChatConversation.objects.filter(widget=widget).count(),
        messages=ChatMessage.objects.filter(conversation__widget=widget).count(),
    )


# ------------------------------------------------------------------ socket reads


def conversation_last_seq(*, conversation_pk: int) -> int:
    """The conversation's newest seq (heartbeats and replays compare against it)."""
    return ChatConversation.objects.values_list("last_seq", flat=True).get(pk=conversation_pk)


def last_seqs(*, conversation_pks: list[int]) -> dict[str, int]:
    """Newest seq per conversation, keyed by external id (an agent's heartbeat)."""
    if not conversation_pks:
        return {}
    rows = ChatConversation.objects.filter(pk__in=conversation_pks)
    return {str(ext): seq for ext, seq in rows.values_list("external_id", "last_seq")}


def visitor_of(*, conversation: ChatConversation) -> ChatVisitor:
    return ChatVisitor.objects.get(pk=conversation.visitor_id)
