"""Origin checks and CORS for the public widget endpoints, in one place.

Browsers send ``Origin`` on cross-origin requests and on same-origin POSTs. The
widget's own iframe is served by the CRM, so the CRM's origin is always allowed;
any other origin must be in the widget's ``allowed_origins`` (empty = any site).
Requests without ``Origin`` (same-origin GETs, server-to-server) carry no
browser-ambient authority and are judged by their visitor token alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from crm.chat import selectors
from crm.chat.errors import error_response
from crm.chat.models import ChatWidget
from crm.conf import public_url

# Any path segment after /p/chat/ is taken for a key, well-formed or not: a malformed
# key ("a.b", "~", "a b", 200 characters) must meet the same checks and the same 404
# as an unknown one, not slip past them to a view that expects ``request.chat_widget``.
PUBLIC_PATH = re.compile(r"/p/chat/(?P<key>[^/]+?)(?:\.js|/.*)?", re.DOTALL)
API_PATH = re.compile(r"/p/chat/[^/]+/api/.*", re.DOTALL)
WELL_FORMED_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
ALLOWED_HEADERS = "Content-Type, X-Chat-Visitor-Token"
ALLOWED_METHODS = "GET, POST, PATCH, OPTIONS"


def crm_origins(request: HttpRequest) -> set[str]:
    own = request.build_absolute_uri("/").rstrip("/")
    return {own, public_url()}


def origin_allowed(request: HttpRequest, widget: ChatWidget, origin: str | None) -> bool:
    if not origin:
        return True
    return origin in crm_origins(request) or widget.origin_allowed(origin)


class WidgetHttpRequest(HttpRequest):
    """A request to a known widget's public path: ``PublicChatMiddleware`` attached it."""

    chat_widget: ChatWidget


class PublicChatMiddleware:
    """Resolve the widget of ``/p/chat/<key>…`` once, enforce Origin, answer CORS.

    Unknown or inactive keys answer 404 before any view runs; a disallowed
    Origin on the JSON API answers 403; allowed cross-origin callers get CORS
    headers naming exactly their origin (never ``*``), with ``Vary: Origin``.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):  # pragma: no cover - sync-only middleware
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        match = PUBLIC_PATH.fullmatch(request.path_info)
        if match is None:
            return _refuse_too_large(request) or self.get_response(request)
        widget = _widget(match["key"])
        is_api = API_PATH.fullmatch(request.path_info) is not None
        if widget is None:
            if is_api:
                return error_response(404, "unknown_widget", "This chat widget does not exist.")
            # The views render their own friendly 404s.
            return _refuse_too_large(request) or self.get_response(request)
        cast(WidgetHttpRequest, request).chat_widget = widget
        if not is_api:
            return _refuse_too_large(request) or self.get_response(request)
        origin = request.headers.get("Origin")
        if not origin_allowed(request, widget, origin):
            response: HttpResponse = error_response(
                403, "origin_not_allowed", "This website is not allowed to use this chat widget."
            )
        else:
            if request.method == "OPTIONS":
                response = HttpResponse(status=204)
            else:
                response = _refuse_too_large(request) or _json_errors_only(
                    self.get_response(request)
                )
            if origin and origin not in crm_origins(request):
                response["Access-Control-Allow-Origin"] = origin
                response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response["Access-Control-Max-Age"] = "600"
                # Retry-After is not CORS-safelisted: without this a cross-origin
                # caller can't read how long a 429 asks it to wait.
                response["Access-Control-Expose-Headers"] = "Retry-After"
        # The answer depends on Origin even when it is a refusal, so caches must key on it.
        response["Vary"] = "Origin"
        response["Cache-Control"] = "no-store"
        return response


def _widget(key: str) -> ChatWidget | None:
    """The active widget of ``key``; a malformed key is unknown without a query.

    Skipping the query matters beyond speed: PostgreSQL refuses a NUL in a string
    parameter with an error, and the key comes straight from the URL.
    """
    if WELL_FORMED_KEY.fullmatch(key) is None:
        return None
    return selectors.widget_by_public_key(public_key=key)


def _refuse_too_large(request: HttpRequest) -> HttpResponse | None:
    """413 for a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, before anything reads it.

    Django raises ``RequestDataTooBig`` on the first read of such a body (the view's,
    or CSRF's reading a form), answers an HTML 400 and logs it at ERROR with a
    traceback, though nothing is wrong on the server. This middleware runs before
    every view and before ``CsrfViewMiddleware.process_view``, so it can say 413
    first, for every path. A multipart form elsewhere is left to Django: its limit
    leaves file data out, so the declared length says nothing. The public endpoints
    take no forms: they read every body whole, whatever its declared type.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    public = request.path_info.startswith("/p/chat/")
    if limit is None or (request.content_type == "multipart/form-data" and not public):
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= limit:
        return None
    message = f"The request body is larger than {limit} bytes."
    if public or _wants_json(request):
        return error_response(413, "too_large", message)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


def _wants_json(request: HttpRequest) -> bool:
    return "json" in (request.content_type or "") or "json" in request.headers.get("Accept", "")


def _json_errors_only(response: HttpResponse) -> HttpResponse:
    """Django's HTML 404 (unknown API path) and ninja's plain 405 become the JSON shape."""
    if response.status_code not in {404, 405} or response.get("Content-Type", "").startswith(
        "application/json"
    ):
        return response
    if response.status_code == 404:
        return error_response(404, "not_found", "There is no such chat API endpoint.")
    refused = error_response(405, "method_not_allowed", "This method is not allowed here.")
    if "Allow" in response:
        refused["Allow"] = response["Allow"]
    return refused
