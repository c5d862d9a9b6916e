"""The widget's public pages: the loader script and the iframe page.

Both are served outside any session or CSRF machinery (no cookies are read or
set) because they are loaded by other websites. ``PublicChatMiddleware`` has put
the active widget on ``request.chat_widget``; when it is missing the key is
unknown or inactive.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import rjsmin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.utils.http import parse_etags
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_safe

from crm.chat.models import ChatWidget
from crm.chat.origins import crm_origins
from crm.conf import public_url

LOADER_SOURCE = Path(__file__).resolve().parent.parent / "static/crm_chat/widget/loader.js"


@lru_cache(maxsize=1)
def _loader_template() -> str:
    """The minified loader source: it is downloaded by every page of every host site."""
    return rjsmin.jsmin(LOADER_SOURCE.read_text())


def loader_script(widget: ChatWidget) -> str:
    config = {
        "o": public_url(),
        "k": widget.public_key,
        "p": widget.position,
        "a": list(widget.allowed_origins),
    }
    # json.dumps escapes nothing HTML-special, but this is served as JavaScript, not
    # inlined into HTML, and every value is validated (origins, #RRGGBB, choices).
    return _loader_template().replace("__CONFIG__", json.dumps(config, separators=(",", ":")))


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison over the header's list (RFC 9110 §13.1.2).

    Proxies that compress responses (nginx ``gzip on``) turn our strong ETag into
    ``W/"…"``; an exact string match would then never answer 304.
    """
    tags = parse_etags(if_none_match)
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


@require_safe
def loader(request: HttpRequest, public_key: str) -> HttpResponse:
    """``/p/chat/<key>.js``: the launcher + iframe injector for the host page.

    Unknown or inactive keys get a harmless JavaScript comment with status 404, so a
    stale snippet never throws on the host page.
    """
    widget: ChatWidget | None = getattr(request, "chat_widget", None)
    if widget is None:
        response = HttpResponse(
            "/* crm-chat: unknown or inactive widget */\n",
            status=404,
            content_type="text/javascript; charset=utf-8",
        )
        response["Cache-Control"] = "no-cache"
        return response
    body = loader_script(widget)
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    # Short freshness, then revalidation by ETag: colour or key changes reach sites fast.
    response["Cache-Control"] = "public, max-age=300, must-revalidate"
    response["ETag"] = etag
    response["Access-Control-Allow-Origin"] = "*"  # a public script; no credentials involved
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _csp(request: HttpRequest, widget: ChatWidget) -> str:
    ancestors = " ".join(widget.allowed_origins) if widget.allowed_origins else "*"
    ws = " ".join(
        o.replace("https://", "wss://").replace("http://", "ws://") for o in crm_origins(request)
    )
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {ws}; frame-ancestors 'self' {ancestors}; base-uri 'none'; "
        "form-action 'none'"
    )


@require_safe
@xframe_options_exempt  # framing is governed by CSP frame-ancestors from allowed_origins
def widget_page(request: HttpRequest, public_key: str) -> HttpResponse:
    """``/p/chat/<key>``: the visitor UI rendered inside the host page's iframe."""
    widget: ChatWidget | None = getattr(request, "chat_widget", None)
    if widget is None:
        response = render(request, "crm_chat/widget_missing.html", status=404)
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response
    context = {
        "widget": widget,
        "config": json.dumps(
            {
                "key": widget.public_key,
                "api": f"/p/chat/{widget.public_key}/api",
                "ws": f"/p/chat/{widget.public_key}/ws",
                "parents": list(widget.allowed_origins),
                "color": widget.color,
                "position": widget.position,
            }
        ),
        # The shared stream client first: widget.js builds on it (both count toward the
        # first-open budget of DESIGN.md §6).
        "stream": static("crm_chat/stream.js"),
        "script": static("crm_chat/widget/widget.js"),
        "style": static("crm_chat/widget/widget.css"),
    }
    response = render(request, "crm_chat/widget.html", context)
    response["Content-Security-Policy"] = _csp(request, widget)
    response["Cache-Control"] = "no-cache"
    response["Referrer-Policy"] = "no-referrer"
    return response
