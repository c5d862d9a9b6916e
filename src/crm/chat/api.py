"""Public JSON API of the widget, used cross-origin without cookies or CSRF.

The visitor token travels in the ``X-Chat-Visitor-Token`` header (never in a
URL, so it never lands in access logs). ``PublicChatMiddleware`` has already
resolved the widget and checked the Origin; each operation here parses its
input, checks ownership, calls one service or selector, and returns its schema.
OpenAPI: ``/p/chat/api/openapi.json``.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyHeader

from crm.chat import presence, ratelimit, selectors
from crm.chat.errors import error_response
from crm.chat.events import ConversationStatus, MessagePayload
from crm.chat.models import (
    ChatConversation,
    ChatVisitor,
    ChatVisitorPageView,
    ChatWidget,
    max_body_length,
)
from crm.chat.origins import WidgetHttpRequest
from crm.chat.payloads import message_payloads
from crm.chat.schemas import (
    ConversationOut,
    CountOut,
    ErrorOut,
    IdentifyIn,
    IdentifyOut,
    MessagesOut,
    OpenIn,
    OpenOut,
    PageIn,
    PageViewOut,
    ReadIn,
    SendIn,
    SentOut,
    VisitorDetailsIn,
    VisitorOut,
    WidgetOut,
)
from crm.chat.services import ChatError, InvalidToken, NotAllowed, chat_service
from crm.core.writes import write_transaction

TOKEN_HEADER = "X-Chat-Visitor-Token"


class ApiRequest(WidgetHttpRequest):
    """What an operation gets: its widget, and the visitor ``visitor_auth`` resolved.

    Ninja keeps what the auth class returned as ``auth``: the visitor on operations
    that require the token, ``None`` on the one that doesn't (``identify``).
    """

    auth: ChatVisitor | None


class NotFound(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


# ----------------------------------------------------------------------- the API


class VisitorToken(APIKeyHeader):
    """Resolves the visitor of ``X-Chat-Visitor-Token`` on the request's widget."""

    param_name = TOKEN_HEADER
    openapi_description = "The token returned by POST /visitor on first contact."

    def authenticate(self, request: HttpRequest, key: str | None) -> ChatVisitor | None:
        # Ninja types the request of an auth class as a plain one.
        widget = cast(WidgetHttpRequest, request).chat_widget
        if not key:
            return None
        visitor = selectors.visitor_by_token(widget=widget, token=key)
        if visitor is None:
            raise InvalidToken("This visitor token is not valid for this widget.")
        return visitor


visitor_auth = VisitorToken()
api = NinjaAPI(
    title="crm-chat public widget API",
    version="1",
    urls_namespace="crm_chat_public_api",
    openapi_url="/api/openapi.json",
    docs_url=None,
    description=(
        "Endpoints the chat widget uses from any website. Every path starts with the "
        'widget\'s public key; errors are `{"error": {"code", "message"}}`.'
    ),
)
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut, 429: ErrorOut}


def _json_error(status: int, code: str, message: str, fields: dict | None = None) -> HttpResponse:
    return error_response(status, code, message, fields=fields)


@api.exception_handler(ratelimit.Limited)
def _limited(request: HttpRequest, exc: ratelimit.Limited) -> HttpResponse:
    response = _json_error(429, "rate_limited", exc.message)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(InvalidToken)
def _invalid_token(request: HttpRequest, exc: InvalidToken) -> HttpResponse:
    return _json_error(401, exc.code, exc.message)


@api.exception_handler(AuthenticationError)
def _no_token(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _json_error(401, "missing_token", f"Send the visitor token in {TOKEN_HEADER}.")


@api.exception_handler(NotFound)
def _not_found(request: HttpRequest, exc: NotFound) -> HttpResponse:
    return _json_error(404, "not_found", exc.message)


@api.exception_handler(NotAllowed)
def _not_allowed(request: HttpRequest, exc: NotAllowed) -> HttpResponse:
    return _json_error(403, exc.code, exc.message)


@api.exception_handler(ChatError)
def _chat_error(request: HttpRequest, exc: ChatError) -> HttpResponse:
    return _json_error(409, exc.code, exc.message)


@api.exception_handler(DjangoValidationError)
def _invalid(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    fields = exc.message_dict if hasattr(exc, "error_dict") else None
    return _json_error(422, "invalid", " ".join(exc.messages), fields)


@api.exception_handler(NinjaValidationError)
def _invalid_request(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    fields: dict[str, list[str]] = {}
    for err in exc.errors:
        # Drop only ninja's location prefix ("body", "payload" / "query" / "path"): a
        # field that is itself called "body" (a message's text) must keep its name.
        parts = [str(p) for p in err.get("loc", ())]
        if parts[:2] == ["body", "payload"]:
            parts = parts[2:]
        elif parts[:1] in (["query"], ["path"], ["header"]):
            parts = parts[1:]
        fields.setdefault(".".join(parts) or "request", []).append(str(err.get("msg", "invalid")))
    return _json_error(422, "invalid_request", "The request is not valid.", fields)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return _json_error(exc.status_code, code, str(exc.message))


# -------------------------------------------------------------------- helpers


def _ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _visitor(request: ApiRequest) -> ChatVisitor:
    assert request.auth is not None  # operations that call this all use visitor_auth
    return request.auth


def _conversation(request: ApiRequest, conversation_id: UUID) -> ChatConversation:
    conv = selectors.visitor_conversation_get(
        visitor=_visitor(request), external_id=conversation_id
    )
    if conv is None:
        raise NotFound("This conversation does not exist.")
    return conv


def _conversation_out(conv: ChatConversation) -> ConversationOut:
    state = selectors.visitor_side_state(conversation=conv)
    if state is None:
        raise NotFound("This conversation does not exist.")
    return ConversationOut(
        id=conv.external_id,
        chat_id=conv.chat_id,
        # The column's choices are exactly the schema's statuses.
        status=cast(ConversationStatus, state.status),
        last_seq=state.last_seq,
        read_up_to=state.read_up_to,
        unread=state.unread,
    )


def _messages(conv: ChatConversation, since: int = 0, limit: int = 500) -> list[MessagePayload]:
    rows = selectors.messages_since(
        conversation=conv, since=since, include_internal=False, limit=limit
    )
    # The schemas would validate the dicts into MessagePayload anyway; done here, typed.
    return [MessagePayload.model_validate(p) for p in message_payloads(rows, visitor=conv.visitor)]


def _record_page(
    request: HttpRequest, visitor: ChatVisitor, page: PageIn
) -> ChatVisitorPageView | None:
    """Record a host page (the service refuses pages of sites the widget doesn't allow)."""
    ratelimit.check("page_view", ip=_ip(request), token_key=str(visitor.pk))
    return chat_service.record_page_view(
        visitor=visitor, url=page.url, title=page.title, referrer=page.referrer
    )


def _widget_out(widget: ChatWidget) -> WidgetOut:
    return WidgetOut(
        name=widget.name,
        welcome_message=widget.welcome_message,
        color=widget.color,
        position=widget.position,
        max_body=max_body_length(),
        open_now=widget.is_within_business_hours(),
    )


# ------------------------------------------------------------------ operations

KEY = "/{public_key}/api"


@api.post(
    f"{KEY}/visitor",
    response={200: IdentifyOut, 201: IdentifyOut, **ERRORS},
    auth=None,
    summary="Identify the visitor (creates one, with a new token, on first contact)",
    openapi_extra={
        "parameters": [
            {"in": "header", "name": TOKEN_HEADER, "required": False, "schema": {"type": "string"}}
        ]
    },
)
def identify(request: ApiRequest, public_key: str, payload: IdentifyIn) -> Status[IdentifyOut]:
    widget = request.chat_widget
    token = request.headers.get(TOKEN_HEADER) or None
    ip = _ip(request)
    if token is None:
        ratelimit.check("create_visitor", ip=ip)
    page = payload.page or PageIn()
    # One transaction: a refused page (bad URL, other site, rate limit) must not leave
    # behind a new visitor whose token the caller never received.
    with write_transaction():
        visitor, new_token = chat_service.identify_visitor(
            widget=widget,
            token=token,
            ip_address=ip,
            user_agent=request.headers.get("User-Agent", ""),
        )
        if page.url:
            _record_page(request, visitor, page)
    conv = selectors.visitor_current_conversation(visitor=visitor)
    body = IdentifyOut(
        visitor_token=new_token,
        visitor=VisitorOut(id=visitor.external_id, name=visitor.name, email=visitor.email),
        widget=_widget_out(widget),
        # Evaluated in this order: the state before the messages, as in list_messages.
        conversation=_conversation_out(conv) if conv else None,
        messages=_messages(conv) if conv else [],
        agents_online=presence.agents_online(widget),
    )
    return Status(201 if new_token else 200, body)


@api.patch(
    f"{KEY}/visitor",
    response={200: VisitorOut, **ERRORS},
    auth=visitor_auth,
    summary="Set name/email",
)
def update_visitor(request: ApiRequest, public_key: str, payload: VisitorDetailsIn) -> VisitorOut:
    visitor = _visitor(request)
    ratelimit.check("update_visitor", ip=_ip(request), token_key=str(visitor.pk))
    chat_service.update_visitor_details(visitor=visitor, name=payload.name, email=payload.email)
    return VisitorOut(id=visitor.external_id, name=visitor.name, email=visitor.email)


@api.post(
    f"{KEY}/conversations",
    response={200: OpenOut, 201: OpenOut, **ERRORS},
    auth=visitor_auth,
    summary="Open a conversation, or return the visitor's open one",
)
def open_conversation(request: ApiRequest, public_key: str, payload: OpenIn) -> Status[OpenOut]:
    visitor = _visitor(request)
    ratelimit.check("open_conversation", ip=_ip(request), token_key=str(visitor.pk))
    before = selectors.visitor_current_conversation(visitor=visitor)
    conv = chat_service.open_conversation(visitor=visitor, subject=payload.subject)
    status = 200 if before is not None and before.pk == conv.pk else 201
    state = _conversation_out(conv)  # before the messages, as in list_messages
    return Status(status, OpenOut(conversation=state, messages=_messages(conv)))


@api.get(
    f"{KEY}/conversations/{{conversation_id}}/messages",
    response={200: MessagesOut, **ERRORS},
    auth=visitor_auth,
    summary="Messages after a seq (the polling endpoint)",
)
def list_messages(
    request: ApiRequest, public_key: str, conversation_id: UUID, since: int = 0, limit: int = 200
) -> MessagesOut:
    if since < 0 or not 1 <= limit <= 500:
        raise DjangoValidationError(
            {"since": "since must be >= 0 and limit between 1 and 500."}, code="invalid"
        )
    visitor = _visitor(request)
    conv = _conversation(request, conversation_id)
    chat_service.touch_visitor(visitor=visitor)
    # The state first: the widget moves its cursor to the answer's ``last_seq`` when
    # the list is complete, so that seq must not be newer than the messages read
    # after it (a message committed in between would be skipped for good).
    conversation = _conversation_out(conv)
    messages = _messages(conv, since=since, limit=limit + 1)
    return MessagesOut(
        conversation=conversation,
        messages=messages[:limit],
        agents_online=presence.agents_online(conv.widget),
        more=len(messages) > limit,
    )


@api.post(
    f"{KEY}/conversations/{{conversation_id}}/messages",
    response={200: SentOut, 201: SentOut, **ERRORS},
    auth=visitor_auth,
    summary="Send a message (idempotent by client_id)",
)
def send_message(
    request: ApiRequest, public_key: str, conversation_id: UUID, payload: SendIn
) -> Status[SentOut]:
    visitor = _visitor(request)
    conv = _conversation(request, conversation_id)
    ratelimit.check("send_message", ip=_ip(request), token_key=str(visitor.pk))
    result = chat_service.send_visitor_message(
        conversation=conv, visitor=visitor, body=payload.body, client_id=payload.client_id
    )
    message = MessagePayload.model_validate(result.payload)
    out = SentOut(
        message=message, conversation=_conversation_out(conv), duplicate=not result.created
    )
    return Status(201 if result.created else 200, out)


@api.post(
    f"{KEY}/conversations/{{conversation_id}}/read",
    response={200: CountOut, **ERRORS},
    auth=visitor_auth,
    summary="Mark agent messages read up to a seq",
)
def mark_read(
    request: ApiRequest, public_key: str, conversation_id: UUID, payload: ReadIn
) -> CountOut:
    conv = _conversation(request, conversation_id)
    updated = chat_service.mark_read(
        conversation=conv, reader="visitor", up_to_seq=payload.up_to_seq
    )
    return CountOut(updated=updated)


@api.post(
    f"{KEY}/page-views",
    response={200: PageViewOut, **ERRORS},
    auth=visitor_auth,
    summary="Record the page the visitor is on",
)
def record_page_view(request: ApiRequest, public_key: str, payload: PageIn) -> PageViewOut:
    view = _record_page(request, _visitor(request), payload)
    return PageViewOut(recorded=view is not None, viewed_at=view.viewed_at if view else None)
