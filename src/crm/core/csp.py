"""Content-Security-Policy for every response that doesn't set its own.

The policy itself is ``CONTENT_SECURITY_POLICY`` in settings, written by django-csp's
middleware. django-csp never replaces a header a view has already set, so the widget's
iframe page (``frame-ancestors`` from the widget's allowed origins) and its friendly 404
keep their own per-view policies. This subclass adds only what depends on the response:

* HTML pages (CRM, settings, inbox, admin) get the settings policy plus the agent
  socket's ``ws://`` and ``wss://`` URL on the host the page came from: CSP 3 lets
  ``'self'`` match WebSocket schemes, but not every browser in use does, and behind a
  TLS-terminating proxy the page's scheme isn't always the request's.
* Everything else (the widget's JSON API, the loader script, static files, JSON
  endpoints of the inbox) gets ``default-src 'none'; frame-ancestors 'none'``: such a
  response is never meant to render, so if a browser is tricked into rendering one
  (an SVG opened directly, a JSON body sniffed as HTML) it can load and run nothing.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

LOCKED_DOWN = {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}


def _socket_sources(request: HttpRequest) -> list[str]:
    try:
        host = request.get_host()
    except DisallowedHost:  # answered 400 already; nothing to connect to
        return []
    return [f"ws://{host}", f"wss://{host}"]


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware with the per-response additions described above."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only or parts.config is not None:
            return parts  # report-only policies and per-view @csp overrides stay as given
        if not response.get("Content-Type", "").startswith("text/html"):
            parts.config = LOCKED_DOWN
            return parts
        parts.update = {**(parts.update or {}), "connect-src": _socket_sources(request)}
        return parts
