"""The agents' inbox: conversation list, conversation view, and its actions.

Reads go through selectors scoped to the agent; every write is one ChatService
call. Realtime comes from the agent socket (``crm.chat.realtime.agent``); the JSON
endpoints for the polling fallback are in ``inbox_json``, the conversation
actions in ``actions``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from ua_parser import parse as parse_user_agent

from crm.chat import inbox_list, presence, selectors
from crm.chat.models import ChatConversation
from crm.chat.payloads import message_payloads
from crm.chat.search import Search
from crm.typing import AuthedHttpRequest

PER_PAGE = 25
ROW_ID = re.compile(r"[0-9]{1,19}")
ROW_ID_MAX = 2**63 - 1  # the largest value of a BigAutoField
view_chat = permission_required("crm_chat.view_chat", raise_exception=True)
reply_chat = permission_required("crm_chat.reply_chat", raise_exception=True)


def get_conversation_for_agent(request: AuthedHttpRequest, external_id: UUID) -> ChatConversation:
    conversation = selectors.conversation_get(agent=request.user, external_id=external_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _filters(request: AuthedHttpRequest) -> dict[str, Any]:
    status = request.GET.get("status", "open")
    if status not in {"open", "pending", "closed", "all", "deleted"}:
        status = "open"
    if status == "deleted" and not request.user.has_perm("crm_chat.delete_chat"):
        status = "open"
    assigned_param = request.GET.get("assigned")
    assigned: str | int | None = (
        assigned_param if assigned_param in {"me", "unassigned"} else _row_id(assigned_param)
    )
    return {
        "status": None if status == "all" else status,
        "assigned": assigned,
        "widget_id": _row_id(request.GET.get("widget")),
        # PostgreSQL refuses text with a NUL in it (a 500); no stored text holds one.
        "search": request.GET.get("q", "").replace("\x00", "")[:200],
        "status_tab": status,
    }


def _row_id(value: str | None) -> int | None:
    """A row id from a filter link, or None (no filter) for anything else.

    ``int()`` would also take "١٢٣" (any Unicode digits), " 7", "1_0", "-0" and numbers
    of any size, and SQLite fails a query with an integer beyond 64 bits (a 500).
    Ids are positive 64-bit integers written in ASCII digits, so only those pass.
    """
    if value is None or ROW_ID.fullmatch(value) is None:
        return None
    number = int(value)
    return number if 0 < number <= ROW_ID_MAX else None


def _show_url_prefix() -> str:
    """``crm-chat-show`` up to the conversation id: the list appends each row's id
    instead of resolving the URL pattern 25 times per page."""
    placeholder = UUID(int=0)
    return reverse("crm-chat-show", args=[placeholder]).removesuffix(f"{placeholder}/")


def _page_number(value: str | None) -> int:
    """The page asked for; 1 for anything that is not a page number (as Django's
    ``Paginator.get_page`` does). Pages are capped so the offset stays an ordinary
    integer for every database."""
    if value is None or not value.isascii() or not value.isdigit():
        return 1
    return min(int(value[:7]), 1_000_000) or 1


def _list_context(request: AuthedHttpRequest) -> dict[str, Any]:
    f = _filters(request)
    qs = selectors.conversation_list(
        agent=request.user,
        status=f["status"],
        assigned=f["assigned"],
        widget_id=f["widget_id"],
        search=f["search"],
    )
    page = inbox_list.inbox_page(
        qs,
        number=_page_number(request.GET.get("page")),
        per_page=PER_PAGE,
        search=Search.parse(f["search"]),
    )
    query = request.GET.copy()
    query.pop("page", None)
    # The status tabs keep the other filters (search, assignee, widget).
    tab_query = query.copy()
    tab_query.pop("status", None)
    return {
        "page": page,
        "show_url": _show_url_prefix(),
        "filters": f,
        "counts": selectors.status_counts(agent=request.user),
        "agents": selectors.chat_agents(),
        "widgets": selectors.widget_choices(),
        "query": query.urlencode(),
        "tab_query": tab_query.urlencode(),
    }


@login_required
@view_chat
@require_GET
def inbox(request: AuthedHttpRequest) -> HttpResponse:
    """``crm-chat-index``: conversations by status tab, filtered and searchable, live."""
    presence.mark_agent_online(request.user.pk)
    context = _list_context(request)
    # htmx re-fetches a page missing from its history cache with HX-Request set too;
    # that must get the whole page, or the back button shows a bare list.
    partial = request.htmx and not request.htmx.history_restore_request
    template = "crm_chat/inbox_list.html" if partial else "crm_chat/inbox.html"
    response = render(request, template, context)
    # The same URL answers a page or a partial: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@view_chat
@require_GET
def conversation(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """``crm-chat-show``: transcript, reply box, actions and the visitor sidebar."""
    conv = get_conversation_for_agent(request, external_id)
    presence.mark_agent_online(request.user.pk)
    visitor = conv.visitor
    rows = selectors.messages_since(conversation=conv, since=0, include_internal=True, limit=2000)
    transcript = message_payloads(rows, visitor=visitor)
    ua = parse_user_agent(visitor.user_agent or "")
    context = {
        "conversation": conv,
        "visitor": visitor,
        "transcript": transcript,
        "online": presence.visitor_is_online(visitor.last_seen_at),
        "browser": ua.user_agent.family if ua.user_agent else "",
        "os": ua.os.family if ua.os else "",
        "page_views": selectors.visitor_page_views(visitor=visitor, limit=50),
        "others": selectors.visitor_other_conversations(agent=request.user, conversation=conv)[:10],
        "agents": selectors.chat_agents(),
        "client_config": json.dumps(
            {
                "conversation": str(conv.external_id),
                "lastSeq": conv.last_seq,
                "canReply": request.user.has_perm("crm_chat.reply_chat"),
            }
        ),
        "can_reply": request.user.has_perm("crm_chat.reply_chat"),
        "can_convert": request.user.has_perm("crm_chat.reply_chat")
        and request.user.has_perm("crm_core.add_lead"),
        "can_promote": request.user.has_perm("crm_chat.reply_chat")
        and request.user.has_perm("crm_core.add_person"),
    }
    return render(request, "crm_chat/conversation.html", context)
