"""Shared fixtures: real servers, real browser, real PostgreSQL and Redis.

In CI (``CI=true``) a test that needs PostgreSQL, Redis or Chromium fails when
that part is missing, instead of skipping: a green run must mean it really ran.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

# Playwright's sync API keeps an event loop in the main thread; Django would then
# refuse ORM calls from test bodies that drive a browser.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = Path(os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium"))
REDIS_TEST_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unavailable(reason: str) -> None:
    """Fail in CI, skip on a developer machine that lacks the part."""
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _require_marked_parts(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        unavailable("this test needs PostgreSQL: set DATABASE_URL=postgres://…")


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    return REDIS_TEST_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LoopKeepingServer:
    """A uvicorn Server that remembers its event loop (for ``ThreadedServer.call``)."""

    def __new__(cls, config):  # type: ignore[no-untyped-def]
        import uvicorn

        class Server(uvicorn.Server):
            async def serve(self, sockets=None):  # type: ignore[no-untyped-def]
                self.loop = asyncio.get_running_loop()
                await super().serve(sockets)

        return Server(config)


class ThreadedServer:
    """The real ASGI application under uvicorn, in a thread of the test process.

    Sharing the process keeps the test database and the in-memory channel layer
    common to the test and the server, like Django's LiveServerTestCase.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        import uvicorn

        from crm.asgi import application

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.host = host
        config = uvicorn.Config(application, lifespan="off", ws="wsproto", log_level="warning")
        self.server = _LoopKeepingServer(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 15 s")
            time.sleep(0.02)
        return self

    def call(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Run a sync function (e.g. a ChatService write) as the server itself would.

        It runs in a worker thread of the server's event loop, so its after-commit
        events reach the in-memory channel layer on that loop, exactly like a write
        made by a view or consumer of the server.
        """
        from asgiref.sync import sync_to_async
        from django.db import connection

        def run():  # type: ignore[no-untyped-def]
            try:
                return fn(*args, **kwargs)
            finally:
                connection.close()  # give a pooled connection back, as a request would

        future = asyncio.run_coroutine_threadsafe(
            sync_to_async(run, thread_sensitive=False)(), self.server.loop
        )
        return future.result(timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[ThreadedServer]:
    server = ThreadedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, per test module.

    Playwright's sync API keeps an event loop running while it is open; closing it
    at the end of each module keeps it from leaking into async tests elsewhere.
    """
    if not CHROMIUM.exists():
        unavailable(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup: None, django_db_blocker) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Close PostgreSQL pools before the test database is dropped.

    Connections that server or worker threads returned to the pool stay open and
    would block ``DROP DATABASE`` at the end of the session.
    """
    yield
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None:
            close_pool()
