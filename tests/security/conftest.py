"""Shared fixtures of the security suite: the real server, foreign websites, agents in Chromium.

The CRM runs under uvicorn (``asgi_server``) and is addressed as
``http://localhost:<port>``; websites that embed or attack the widget are tiny HTTP
servers on other ports (and, where a test needs another *site* rather than just
another origin, on 127.0.0.1), so every cross-origin rule is the browser's real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.test import Client

from crm.conf import DEFAULTS

# Generous limits for suites that send hundreds of requests as one visitor; the
# limits themselves are covered by tests/chat/api/test_ratelimit.py.
NO_RATE_LIMITS = {action: (1_000_000, 60) for action in DEFAULTS["CRM_CHAT_RATE_LIMITS"]}


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Rate-limit counters and presence marks live in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def crm(asgi_server, settings):  # type: ignore[no-untyped-def]
    """The product under uvicorn, with its public URL on ``localhost`` (its own origin)."""
    settings.CRM_PUBLIC_URL = f"http://localhost:{asgi_server.port}"
    return asgi_server


def in_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a fresh thread and return its result.

    Playwright's sync API keeps an event loop running in the test's thread, where
    Django's test Client (its middleware adapts through async_to_sync) can't run.
    """
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def crm_origin(server: Any) -> str:
    return f"http://localhost:{server.port}"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until ``predicate`` is truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout:.0f} s")


@dataclass
class Website:
    """A website on its own origin whose pages the test writes: ``site.pages["/x"] = html``."""

    server: ThreadingHTTPServer
    host: str
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}"

    def url(self, path: str = "/") -> str:
        return self.origin + path


def _start_website(host: str) -> Website:
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            html = pages.get(self.path.split("?")[0])
            if html is None:
                self.send_error(404)
                return
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Website(server, host, pages)


@pytest.fixture
def websites() -> Iterator[Callable[..., Website]]:
    """Start websites on demand; ``host="127.0.0.1"`` makes one another *site* than the CRM.

    ``localhost:<other port>`` is another origin but the same site as the CRM, so
    SameSite=Lax cookies ride along: the setting cross-site WebSocket hijacking needs.
    """
    started: list[Website] = []

    def start(host: str = "127.0.0.1") -> Website:
        site = _start_website(host)
        started.append(site)
        return site

    yield start
    for site in started:
        site.server.shutdown()
        site.server.server_close()


def host_page(snippet: str, *, title: str = "Shop", body: str = "") -> str:
    """A page of another site with the embed snippet; the snippet's own inline script is
    marked ``data-embed`` so the markup probe tells it from one a payload made."""
    snippet = snippet.replace("<script>", "<script data-embed>", 1)
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}{snippet}</body></html>"
    )


def session_cookie(user: AbstractBaseUser) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def log_in(context: Any, server: Any, user: AbstractBaseUser) -> None:
    """Give a browser context the agent's session on the CRM's public origin."""
    context.add_cookies(
        [
            {
                "name": django_settings.SESSION_COOKIE_NAME,
                "value": session_cookie(user),
                "url": crm_origin(server),
            }
        ]
    )
