"""The agents' inbox: conversation list, conversation view, and its actions.

Reads go through selectors scoped to the agent; every write is one ChatService
call. Realtime comes from the agent socket (``consumers.AgentConsumer``); the JSON
endpoints here are the same operations for the polling fallback.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from ua_parser import parse as parse_user_agent

from crm.chat import presence, selectors
from crm.chat.models import ChatConversation
from crm.chat.payloads import message_payloads
from crm.chat.services import ChatError, chat_service

PER_PAGE = 25
view_chat = permission_required("crm_chat.view_chat", raise_exception=True)
reply_chat = permission_required("crm_chat.reply_chat", raise_exception=True)


def _get_conversation_for_agent(request: HttpRequest, external_id: UUID) -> ChatConversation:
    conversation = selectors.conversation_get(agent=request.user, external_id=external_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _filters(request: HttpRequest) -> dict[str, Any]:
    status = request.GET.get("status", "open")
    if status not in {"open", "pending", "closed", "all", "deleted"}:
        status = "open"
    if status == "deleted" and not request.user.has_perm("crm_chat.delete_chat"):
        status = "open"
    assigned: str | int | None = request.GET.get("assigned") or None
    if assigned not in {None, "me", "unassigned"}:
        try:
            assigned = int(assigned)  # type: ignore[arg-type]
        except ValueError:
            assigned = None
    try:
        widget_id = int(request.GET.get("widget") or 0) or None
    except ValueError:
        widget_id = None
    return {
        "status": None if status == "all" else status,
        "assigned": assigned,
        "widget_id": widget_id,
        "search": request.GET.get("q", "")[:200],
        "status_tab": status,
    }


def _list_context(request: HttpRequest) -> dict[str, Any]:
    f = _filters(request)
    qs = selectors.conversation_list(
        agent=request.user,
        status=f["status"],
        assigned=f["assigned"],
        widget_id=f["widget_id"],
        search=f["search"],
    )
    page = Paginator(qs, PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    previews = selectors.last_messages(conversations=rows)
    query = request.GET.copy()
    query.pop("page", None)
    # The status tabs keep the other filters (search, assignee, widget).
    tab_query = query.copy()
    tab_query.pop("status", None)
    return {
        "page": page,
        "rows": [
            {
                "conversation": c,
                "preview": previews.get(c.pk),
                "online": presence.visitor_is_online(c.visitor.last_seen_at),
            }
            for c in rows
        ],
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
def inbox(request: HttpRequest) -> HttpResponse:
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
def conversation(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """``crm-chat-show``: transcript, reply box, actions and the visitor sidebar."""
    conv = _get_conversation_for_agent(request, external_id)
    presence.mark_agent_online(request.user.pk)
    visitor = conv.visitor
    rows = selectors.messages_since(conversation=conv, since=0, include_internal=True, limit=2000)
    transcript = [p.model_dump(mode="json") for p in message_payloads(rows, visitor=visitor)]
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


# ------------------------------------------------------------- JSON (polling fallback)


@login_required
@view_chat
@require_GET
def messages_since(request: HttpRequest, external_id: UUID) -> JsonResponse:
    """Messages after ``since`` for the conversation view when the socket is down."""
    conv = _get_conversation_for_agent(request, external_id)
    try:
        since = max(0, int(request.GET.get("since", "0")))
    except ValueError:
        return _error(422, "invalid", "since must be an integer.")
    presence.mark_agent_online(request.user.pk)
    rows = selectors.messages_since(conversation=conv, since=since, include_internal=True)
    return JsonResponse(
        {
            "messages": [
                p.model_dump(mode="json") for p in message_payloads(rows, visitor=conv.visitor)
            ],
            "status": conv.status,
            "last_seq": conv.last_seq,
            "visitor_read_up_to": selectors.agent_messages_read_up_to(conversation=conv),
            "online": presence.visitor_is_online(conv.visitor.last_seen_at),
        }
    )


@login_required
@view_chat
@require_GET
def unread(request: HttpRequest) -> JsonResponse:
    """The sidebar badge and the list's freshness marker, for polling agents."""
    presence.mark_agent_online(request.user.pk)
    return JsonResponse(
        {
            "unread": selectors.unread_total(agent=request.user),
            "latest": selectors.latest_activity(agent=request.user),
        }
    )


@login_required
@reply_chat
@require_POST
def send_message(request: HttpRequest, external_id: UUID) -> JsonResponse:
    """Send a reply over HTTP (the socket-less path); idempotent by ``client_id``."""
    conv = _get_conversation_for_agent(request, external_id)
    data = _json_object(request)
    if data is None:
        return _error(400, "bad_request", "Send a JSON object.")
    try:
        result = chat_service.send_agent_message(
            conversation=conv,
            agent=request.user,
            body=data.get("body"),  # type: ignore[arg-type]
            client_id=data.get("client_id") if isinstance(data.get("client_id"), str) else None,
        )
    except ValidationError as exc:
        return _error(422, "invalid", " ".join(exc.messages))
    except ChatError as exc:
        return _error(409, exc.code, exc.message)
    (payload,) = message_payloads([result.message], visitor=conv.visitor)
    return JsonResponse({"message": payload.model_dump(mode="json")}, status=201)


@login_required
@view_chat
@require_POST
def mark_read(request: HttpRequest, external_id: UUID) -> JsonResponse:
    """Mark the visitor's messages read up to ``up_to_seq`` (default: all)."""
    conv = _get_conversation_for_agent(request, external_id)
    data = _json_object(request)
    if data is None:
        return _error(400, "bad_request", "Send a JSON object.")
    try:
        up_to = int(data.get("up_to_seq", conv.last_seq))
        updated = chat_service.mark_read(conversation=conv, reader="user", up_to_seq=up_to)
    except (ValueError, TypeError, OverflowError):
        return _error(422, "invalid", "up_to_seq must be an integer.")
    except ValidationError as exc:
        return _error(422, "invalid", " ".join(exc.messages))
    return JsonResponse({"updated": updated})


def _json_object(request: HttpRequest) -> dict[str, Any] | None:
    """The request's JSON object, or None when the body is not one.

    Python's json module decodes lone surrogates ("\\ud800"), which can't be
    encoded as UTF-8 and so can't be stored: such text counts as malformed too,
    instead of failing the write with a 500.
    """
    try:
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            return None
        json.dumps(data, ensure_ascii=False).encode()
    except ValueError:  # also UnicodeDecodeError / UnicodeEncodeError
        return None
    return data


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


# ------------------------------------------------------------------------ actions


def _act(request: HttpRequest, external_id: UUID, action: str) -> HttpResponse:
    """Run one conversation action; a refusal becomes a friendly flash message."""
    conv = _get_conversation_for_agent(request, external_id)
    user = request.user
    try:
        if action == "assign":
            target = request.POST.get("agent", "")
            agent = None
            if target == "me":
                agent = user
            elif target:
                # Only someone who can open chats may own one: a chat assigned to a
                # user without chat access would vanish for everyone but managers.
                agent = selectors.chat_agents().filter(pk=int(target)).first()
                if agent is None:
                    raise ChatError("Choose an active agent.")
            chat_service.assign_conversation(conversation=conv, agent=agent, by=user)
            done = (
                f"Assigned to {agent.get_full_name() or agent.get_username()}."
                if agent
                else "Unassigned."
            )
        elif action == "pending":
            chat_service.mark_pending(conversation=conv, by=user)
            done = f"Chat {conv.chat_id} is pending."
        elif action == "close":
            chat_service.close_conversation(conversation=conv, by=user)
            done = f"Chat {conv.chat_id} closed."
        elif action == "reopen":
            chat_service.reopen_conversation(conversation=conv, by=user)
            done = f"Chat {conv.chat_id} reopened."
        elif action == "convert":
            if not user.has_perm("crm_core.add_lead"):
                raise ChatError("You may not create leads.")
            lead = chat_service.convert_to_lead(conversation=conv, by=user)
            messages.success(request, f"Converted to lead “{lead.title}”.")
            return redirect(lead.get_absolute_url())
        elif action in {"delete", "restore"}:
            if not user.has_perm("crm_chat.delete_chat"):
                raise ChatError("You may not delete chats.")
            if action == "delete":
                chat_service.delete_conversation(conversation=conv, by=user)
                messages.success(request, f"Chat {conv.chat_id} deleted. Restore it from Deleted.")
                return redirect("crm-chat-index")
            chat_service.restore_conversation(conversation=conv, by=user)
            done = f"Chat {conv.chat_id} restored."
        elif action == "promote":
            if not user.has_perm("crm_core.add_person"):
                raise ChatError("You may not create people.")
            person = chat_service.promote_visitor_to_person(visitor=conv.visitor, by=user)
            done = f"Visitor linked to {person.name}."
        else:
            raise Http404("Unknown action.")
    except (ChatError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", "That value is not valid."))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, done)
    if selectors.conversation_get(agent=user, external_id=conv.external_id) is None:
        # Handing the chat to a colleague can take it out of this agent's sight.
        return redirect("crm-chat-index")
    return redirect(conv.get_absolute_url())


@login_required
@reply_chat
@require_POST
def action(request: HttpRequest, external_id: UUID, name: str) -> HttpResponse:
    """POST-only conversation actions: assign, pending, close, reopen, convert, promote,
    delete and restore."""
    return _act(request, external_id, name)
