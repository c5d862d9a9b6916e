"""Idempotent demo data for the chat module, and the demo host website.

The demo site is a separate tiny HTTP server on another loopback port that pastes
the widget's embed snippet into its pages, so a newcomer sees the widget working
cross-origin, exactly as it will on their own website.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from django.db import transaction

from crm.chat.models import ChatWidget
from crm.chat.services import chat_service
from crm.conf import public_url
from crm.core.demo import ensure_demo_owner
from crm.core.models import Team

DEMO_WIDGET_NAME = "Website chat"

_CONVERSATIONS = [
    (
        "Maya Patel",
        "maya@example.org",
        ["Hi! Do you ship to Canada?", "And how long does it take?"],
    ),
    ("", "", ["Is there a student discount?"]),
    ("Tom Becker", "tom@example.net", ["My order #4411 hasn't arrived yet."]),
]


def default_demo_site_port() -> int:
    """The port `make run` serves the demo site on: the CRM's public port + 1."""
    public = urlsplit(public_url())
    return (public.port or (443 if public.scheme == "https" else 80)) + 1


def demo_site_url(port: int) -> str:
    """Where the demo site is reached: the CRM's public host name, on ``port``."""
    host = urlsplit(public_url()).hostname or "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def demo_site_origins(port: int | None = None, *, host: str = "") -> list[str]:
    """Origins the demo page may be opened from, so the widget accepts each of them.

    Loopback by both names, the CRM's public host name and, when the site listens on
    one specific address, that address too.
    """
    port = port or default_demo_site_port()
    hosts = ["127.0.0.1", "localhost", urlsplit(public_url()).hostname or ""]
    if host and host not in {"0.0.0.0", "::"}:
        hosts.append(host)
    origins: list[str] = []
    for name in hosts:
        if not name:
            continue
        origin = f"http://{f'[{name}]' if ':' in name else name}:{port}"
        if origin not in origins:
            origins.append(origin)
    return origins


def demo_widget() -> ChatWidget | None:
    """The demo widget, unless someone deleted it (a deleted widget serves nothing)."""
    return ChatWidget.objects.filter(name=DEMO_WIDGET_NAME, deleted_at__isnull=True).first()


def allow_demo_site(widget: ChatWidget, origins: list[str]) -> ChatWidget:
    """Add the demo site's origins to the widget's allow-list (through ChatService).

    A widget that admits any origin (empty list) is left alone: narrowing it to the
    demo site would lock out every other page that embeds it.
    """
    missing = [o for o in origins if not widget.origin_allowed(o)]
    if not missing:
        return widget
    return chat_service.update_widget(
        widget=widget, allowed_origins=[*widget.allowed_origins, *missing]
    )


@transaction.atomic
def load_chat_demo() -> list[str]:
    """Create the demo widget and a few conversations once; returns lines to print."""
    owner = ensure_demo_owner()
    # Created once: a demo widget the user deleted stays deleted (restore brings it back).
    if not ChatWidget.objects.filter(name=DEMO_WIDGET_NAME).exists():
        widget = chat_service.create_widget(
            name=DEMO_WIDGET_NAME,
            welcome_message="Hi there! Ask us anything: we usually reply in a few minutes.",
            allowed_origins=demo_site_origins(),
            team=Team.objects.filter(name="Support").first(),
        )
        for name, email, bodies in _CONVERSATIONS:
            visitor, _ = chat_service.identify_visitor(
                widget=widget, token=None, ip_address="81.2.69.142", user_agent=_DEMO_UA
            )
            chat_service.update_visitor_details(visitor=visitor, name=name, email=email)
            chat_service.record_page_view(
                # On the demo site: the widget allows only its pages in the trail.
                visitor=visitor,
                url=f"{widget.allowed_origins[0]}/pricing",
                title="Pricing",
            )
            conv = chat_service.open_conversation(visitor=visitor)
            for body in bodies:
                chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=body)
            if name == "Tom Becker":
                chat_service.send_agent_message(
                    conversation=conv, agent=owner, body="Sorry about that, Tom — checking now."
                )
    port = default_demo_site_port()
    return [
        f"Demo site: {demo_site_url(port)} (the chat widget, with `crm run --demo-site {port}`)"
    ]


_DEMO_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Northwind Coffee</title>
<style>
body {{ font: 16px/1.6 Georgia, serif; margin: 0; color: #292524; background: #fafaf9; }}
header {{ background: #44403c; color: #fafaf9; padding: 1rem 2rem; display: flex; gap: 2rem; }}
header a {{ color: #fde68a; }} main {{ padding: 2rem; max-width: 720px; }}
</style></head>
<body>
<header><strong>Northwind Coffee</strong><nav><a href="/">Home</a> · <a href="/pricing">Pricing</a></nav></header>
<main><h1>{title}</h1><p>{text}</p>
<p>This is a demo website on another origin. The chat button in the corner is the
crm-chat widget, added with one script tag; answer its messages in the CRM inbox.</p></main>
{snippet}
</body></html>
"""


class _DemoSiteHandler(BaseHTTPRequestHandler):
    snippet = ""
    pages = {
        "/": ("Fresh roasted coffee", "Single-origin beans, roasted every Monday."),
        "/pricing": ("Pricing", "Subscriptions start at 12 EUR a month. Shipping is free."),
    }

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path not in self.pages:
            self.send_error(404)
            return
        title, text = self.pages[path]
        body = _PAGE.format(
            title=html.escape(title), text=html.escape(text), snippet=self.snippet
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_demo_site(*, host: str, port: int, snippet: str) -> ThreadingHTTPServer:
    """Start the demo host website in a daemon thread and return its server."""
    handler = type("DemoSiteHandler", (_DemoSiteHandler,), {"snippet": snippet})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
