"""The inbox's JSON endpoints: the same operations as the agent socket, for polling.

When the agent socket can't open, the conversation page polls ``messages`` and
sends over ``send``; the sidebar badge polls ``unread``. Same payloads as the
socket, same scoping as the inbox pages, the one JSON error shape.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse, RawPostDataException
from django.views.decorators.http import require_GET, require_POST

from crm.chat import presence, selectors
from crm.chat.errors import error_response
from crm.chat.payloads import message_payloads
from crm.chat.services import ChatError, chat_service
from crm.chat.views.inbox import get_conversation_for_agent, reply_chat, view_chat
from crm.typing import AuthedHttpRequest


@login_required
@view_chat
@require_GET
def messages_since(request: AuthedHttpRequest, external_id: UUID) -> JsonResponse:
    """Messages after ``since`` for the conversation view when the socket is down."""
    conv = get_conversation_for_agent(request, external_id)
    try:
        since = max(0, int(request.GET.get("since", "0")))
    except ValueError:
        return error_response(422, "invalid", "since must be an integer.")
    presence.mark_agent_online(request.user.pk)
    rows = selectors.messages_since(conversation=conv, since=since, include_internal=True)
    return JsonResponse(
        {
            "messages": message_payloads(rows, visitor=conv.visitor),
            "status": conv.status,
            "last_seq": conv.last_seq,
            "visitor_read_up_to": selectors.agent_messages_read_up_to(conversation=conv),
            "online": presence.visitor_is_online(conv.visitor.last_seen_at),
        }
    )


@login_required
@view_chat
@require_GET
def unread(request: AuthedHttpRequest) -> JsonResponse:
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
def send_message(request: AuthedHttpRequest, external_id: UUID) -> JsonResponse:
    """Send a reply over HTTP (the socket-less path); idempotent by ``client_id``."""
    conv = get_conversation_for_agent(request, external_id)
    data = _json_object(request)
    if data is None:
        return error_response(400, "bad_request", "Send a JSON object.")
    try:
        result = chat_service.send_agent_message(
            conversation=conv,
            agent=request.user,
            body=data.get("body"),  # type: ignore[arg-type]
            client_id=data.get("client_id") if isinstance(data.get("client_id"), str) else None,
        )
    except ValidationError as exc:
        return error_response(422, "invalid", " ".join(exc.messages))
    except ChatError as exc:
        return error_response(409, exc.code, exc.message)
    payload = result.payload
    return JsonResponse({"message": payload}, status=201)


@login_required
@view_chat
@require_POST
def mark_read(request: AuthedHttpRequest, external_id: UUID) -> JsonResponse:
    """Mark the visitor's messages read up to ``up_to_seq`` (default: all)."""
    conv = get_conversation_for_agent(request, external_id)
    data = _json_object(request)
    if data is None:
        return error_response(400, "bad_request", "Send a JSON object.")
    try:
        up_to = int(data.get("up_to_seq", conv.last_seq))
        updated = chat_service.mark_read(conversation=conv, reader="user", up_to_seq=up_to)
    except (ValueError, TypeError, OverflowError):
        return error_response(422, "invalid", "up_to_seq must be an integer.")
    except ValidationError as exc:
        return error_response(422, "invalid", " ".join(exc.messages))
    return JsonResponse({"updated": updated})


def _json_object(request: AuthedHttpRequest) -> dict[str, Any] | None:
    """The request's JSON object, or None when the body is not one.

    Python's json module decodes lone surrogates ("\\ud800"), which can't be
    encoded as UTF-8 and so can't be stored: such text counts as malformed too,
    instead of failing the write with a 500. A multipart form is no JSON either:
    the CSRF check has streamed it into ``request.POST`` already, after which Django
    refuses to hand out the body (``RawPostDataException``, a 500 if let through).
    """
    try:
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            return None
        json.dumps(data, ensure_ascii=False).encode()
    except (ValueError, RawPostDataException):  # ValueError: also Unicode errors
        return None
    return data
