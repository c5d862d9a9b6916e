"""A clear 503 while the database is unreachable, instead of a 500 and a traceback.

Clients already know what to do with 503 + Retry-After: the widget and the inbox
keep their unsent messages and retry, so an outage loses nothing.
"""

from __future__ import annotations

import logging
import sys

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
MESSAGE = "The service is briefly unavailable. Please try again in a few seconds."
UNAVAILABLE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def _is_outage(exc: BaseException) -> bool:
    # OperationalError/InterfaceError cover lost connections, refused connections and
    # pool timeouts; other DatabaseErrors (integrity, data) are bugs and stay 500s.
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: 503 + Retry-After when the cause is a database outage.

    Django calls it while handling the exception (from any middleware or view), so
    ``sys.exc_info()`` names the cause.
    """
    exc = sys.exc_info()[1]
    if exc is None or not _is_outage(exc):
        return _plain_500(request)
    logger.error("database unavailable: %s", exc)
    wants_json = request.path.startswith("/p/chat/") or "json" in request.headers.get("Accept", "")
    if wants_json:
        response: HttpResponse = JsonResponse(
            {"error": {"code": "unavailable", "message": MESSAGE}}, status=503
        )
    else:
        response = HttpResponse(
            render_to_string("core/unavailable.html", {"message": MESSAGE}), status=503
        )
        # Its own small inline <style> and nothing else (the page has no scripts).
        response["Content-Security-Policy"] = UNAVAILABLE_CSP
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def _plain_500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/p/chat/"):
        return JsonResponse(
            {"error": {"code": "server_error", "message": "Something went wrong on our side."}},
            status=500,
        )
    return defaults.server_error(request)
