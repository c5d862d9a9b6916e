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

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from crm.chat import selectors
from crm.chat.models import ChatWidget
from crm.conf import public_url

PUBLIC_PATH = re.compile(r"^/p/chat/(?P<key>[A-Za-z0-9_-]{1,128})(?:\.js|/.*)?$")
API_PATH = re.compile(r"^/p/chat/[A-Za-z0-9_-]{1,128}/api/")
ALLOWED_HEADERS = "Content-Type, X-Chat-Visitor-Token"
ALLOWED_METHODS = "GET, POST, PATCH, OPTIONS"


def error_response(
    status: int, code: str, message: str, *, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    """The one error shape of every public endpoint: ``{"error": {"code", "message"}}``."""
    error: dict[str, object] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return JsonResponse({"error": error}, status=status)


def crm_origins(request: HttpRequest) -> set[str]:
    own = request.build_absolute_uri("/").rstrip("/")
    return {own, public_url()}


def origin_allowed(request: HttpRequest, widget: ChatWidget, origin: str | None) -> bool:
    if not origin:
        return True
    return origin in crm_origins(request) or widget.origin_allowed(origin)


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
        match = PUBLIC_PATH.match(request.path_info)
        if match is None:
            return self.get_response(request)
        widget = selectors.widget_by_public_key(public_key=match["key"])
        is_api = bool(API_PATH.match(request.path_info))
        if widget is None:
            if is_api:
                return error_response(404, "unknown_widget", "This chat widget does not exist.")
            return self.get_response(request)  # the views render their own friendly 404s
        request.chat_widget = widget  # type: ignore[attr-defined]
        if not is_api:
            return self.get_response(request)
        origin = request.headers.get("Origin")
        if not origin_allowed(request, widget, origin):
            response: HttpResponse = error_response(
                403, "origin_not_allowed", "This website is not allowed to use this chat widget."
            )
        else:
            if request.method == "OPTIONS":
                response = HttpResponse(status=204)
            else:
                response = _json_errors_only(self.get_response(request))
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
