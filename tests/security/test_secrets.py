"""Widget public keys and visitor tokens: how they are made, stored, looked up and kept out
of URLs and logs.

* Both come from ``secrets`` (the OS CSPRNG): 64 characters of the expected alphabet,
  close to the alphabet's full entropy per character over thousands of samples, no
  repeats, and reseeding ``random`` changes nothing.
* The database keeps only the SHA-256 of a visitor token: after a real session no
  table holds the raw token anywhere.
* Lookups are one SQL equality on that digest (the raw token never reaches the
  database), so their timing can't reveal how much of a guessed token is right; no
  Python code compares secrets with ``==`` / ``in`` either.
* A real widget session in Chromium (WebSocket, then polling, with an agent replying
  from the inbox) never puts the visitor token or the agent's session cookie into a
  request URL, a Referer, or any log record, with every logger at DEBUG.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import random
import re
import secrets
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from playwright.sync_api import Browser, Page

import crm
from crm.chat import models as chat_models
from crm.chat import selectors
from crm.chat.models import (
    ChatMessage,
    ChatVisitor,
    ChatVisitorPageView,
    hash_token,
    new_public_key,
    new_visitor_token,
)
from crm.chat.services import chat_service
from crm.core.services import create_agent
from tests.security.conftest import (
    NO_RATE_LIMITS,
    Website,
    crm_origin,
    host_page,
    in_thread,
    log_in,
    wait_for,
)

SAMPLES = 3000
HEX = set("0123456789abcdef")
URLSAFE = set(string.ascii_letters + string.digits + "-_")


def entropy_per_char(values: list[str]) -> float:
    counts = Counter("".join(values))
    total = sum(counts.values())
    return -sum(n / total * math.log2(n / total) for n in counts.values())


class GenerationTests:
    def test_public_keys_are_64_hex_characters_at_full_entropy_never_repeating(self) -> None:
        keys = [new_public_key() for _ in range(SAMPLES)]
        assert all(len(k) == 64 and set(k) <= HEX for k in keys)
        assert len(set(keys)) == SAMPLES
        assert len({k[:16] for k in keys}) == SAMPLES  # not even a 64-bit prefix repeats
        assert entropy_per_char(keys) > 3.99  # of log2(16) = 4 bits
        # Every position uses the whole alphabet evenly (no fixed or biased digits).
        for position in range(64):
            column = Counter(k[position] for k in keys)
            assert set(column) == HEX, position
            assert max(column.values()) < SAMPLES / 16 * 1.5, (position, column)

    def test_visitor_tokens_are_64_urlsafe_characters_at_full_entropy_never_repeating(
        self,
    ) -> None:
        tokens = [new_visitor_token() for _ in range(SAMPLES)]
        assert all(len(t) == 64 and set(t) <= URLSAFE for t in tokens)
        assert len(set(tokens)) == SAMPLES
        assert len({t[:11] for t in tokens}) == SAMPLES  # 66 bits of prefix: no repeats
        assert entropy_per_char(tokens) > 5.98  # of log2(64) = 6 bits
        for position in range(64):
            column = Counter(t[position] for t in tokens)
            assert len(column) >= 60, position
            assert max(column.values()) < SAMPLES / 64 * 2, (position, column)

    def test_they_come_from_secrets_not_from_random(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        calls: list[tuple[str, int]] = []
        real_hex, real_urlsafe = secrets.token_hex, secrets.token_urlsafe

        def spy_hex(n: int) -> str:
            calls.append(("token_hex", n))
            return real_hex(n)

        def spy_urlsafe(n: int) -> str:
            calls.append(("token_urlsafe", n))
            return real_urlsafe(n)

        monkeypatch.setattr(chat_models.secrets, "token_hex", spy_hex)
        monkeypatch.setattr(chat_models.secrets, "token_urlsafe", spy_urlsafe)
        new_public_key()
        new_visitor_token()
        assert calls == [("token_hex", 32), ("token_urlsafe", 48)]  # 256 and 384 bits
        # A seeded `random` would make these reproducible; `secrets` ignores it.
        random.seed(1234)
        first = (new_public_key(), new_visitor_token())
        random.seed(1234)
        assert (new_public_key(), new_visitor_token()) != first

    def test_widgets_and_visitors_made_by_the_service_get_fresh_secrets(self, db: None) -> None:
        widgets = [chat_service.create_widget(name=f"w{i}") for i in range(40)]
        keys = [w.public_key for w in widgets]
        assert len(set(keys)) == 40 and all(len(k) == 64 and set(k) <= HEX for k in keys)
        old = widgets[0].public_key
        assert chat_service.regenerate_public_key(widget=widgets[0]).public_key not in keys
        assert widgets[0].public_key != old
        tokens = [
            chat_service.identify_visitor(widget=widgets[1], token=None)[1] for _ in range(200)
        ]
        assert len(set(tokens)) == 200
        assert all(t and len(t) == 64 and set(t) <= URLSAFE for t in tokens)


class StorageAndLookupTests:
    def test_the_database_keeps_the_digest_and_is_queried_with_it(self, db: None) -> None:
        widget = chat_service.create_widget(name="Shop", offline_message="")
        client = Client()
        base = f"/p/chat/{widget.public_key}/api"
        response = client.post(f"{base}/visitor", "{}", "application/json")
        token = response.json()["visitor_token"]
        digest = hash_token(token)
        assert ChatVisitor.objects.get().visitor_token == digest
        assert re.fullmatch(r"[0-9a-f]{64}", digest) and digest != token

        # Every lookup by token, through the API and the selector the sockets use, is
        # one equality on the digest: the raw token never reaches the database.
        with CaptureQueriesContext(connection) as queries:
            headers = {"X-Chat-Visitor-Token": token}
            for path, status in (("/visitor", 200), ("/conversations", 201)):
                answer = client.post(base + path, "{}", "application/json", headers=headers)
                assert answer.status_code == status, answer.content
            assert selectors.visitor_by_token(widget=widget, token=token) is not None
            chat_service.identify_visitor(widget=widget, token=token)
        sql = [q["sql"] for q in queries.captured_queries]
        assert not [s for s in sql if token in s]
        lookups = [s for s in sql if digest in s]
        assert len(lookups) >= 4
        column = re.compile(r'"?visitor_token"?\s*=\s*\'?' + digest)
        assert all(column.search(s) for s in lookups), lookups

    def test_a_guess_sharing_a_prefix_with_the_token_is_just_another_digest(self, db: None) -> None:
        """The compared values are digests: a right prefix of the token is no closer."""
        widget = chat_service.create_widget(name="Shop")
        _, token = chat_service.identify_visitor(widget=widget, token=None)
        assert token is not None
        for keep in (8, 32, 63):
            guess = token[:keep] + ("A" if token[keep] != "A" else "B") + token[keep + 1 :]
            assert selectors.visitor_by_token(widget=widget, token=guess) is None
            pairs = zip(hash_token(guess), hash_token(token), strict=True)
            shared = sum(a == b for a, b in pairs)
            assert shared < 16  # ~4 of 64 hex digits match by chance, wherever they are

    def test_no_python_code_compares_secrets_with_equality(self) -> None:
        """Nothing to time: secrets are only ever compared by the database, as digests.

        There is no runtime hook that could show a comparison that isn't there, so
        this reads the product's source: no ``==``, ``!=``, ``in`` on anything named
        like a token, key, secret, password or digest (``hmac.compare_digest`` is how
        a future comparison must be written).
        """
        secret_words = ("token", "public_key", "secret", "password", "digest")
        found = []
        for path in Path(crm.__file__).parent.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Compare):
                    continue
                if not any(
                    isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops
                ):
                    continue
                operands = [node.left, *node.comparators]
                named = [
                    n.id if isinstance(n, ast.Name) else n.attr
                    for o in operands
                    for n in ast.walk(o)
                    if isinstance(n, ast.Name | ast.Attribute)
                ]
                if any(w in name.lower() for name in named for w in secret_words):
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        assert not found, found


# ------------------------------------------------------------- a real session, watched


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.texts: list[str] = []
        self.seen: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) in self.seen:
            return
        self.seen.add(id(record))
        try:
            text = record.getMessage()
        except Exception:  # a record whose args don't fit its message
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        extra = {k: v for k, v in record.__dict__.items() if k not in _PLAIN_RECORD}
        self.texts.append(f"{record.name} {record.levelname} {text} {extra!r}")


_PLAIN_RECORD = set(vars(logging.LogRecord("x", 0, "", 0, "", (), None))) | {"message"}
WATCHED_LOGGERS = (
    "",
    "django",
    "django.request",
    "django.server",
    "django.security",
    "django.channels.server",
    "channels",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "crm",
    "asyncio",
)


@pytest.fixture
def all_logs() -> Iterator[_Records]:
    """Every record of every logger at DEBUG (uvicorn's access log included)."""
    handler = _Records()
    saved = []
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def _watch_urls(page: Page, into: list[str]) -> None:
    def on_request(request: Any) -> None:
        into.append(request.url)
        into.extend(v for k, v in request.headers.items() if k.lower() == "referer")

    page.on("request", on_request)
    page.on("websocket", lambda ws: into.append(ws.url))


def _visitor_session(browser: Browser, site: Website, widget: Any, urls: list[str], *, ws: bool):
    """Open the widget on the host page, say hello, navigate, reload; returns the token."""
    context = browser.new_context()
    if not ws:
        context.add_init_script("delete window.WebSocket")
    page = context.new_page()
    page.set_default_timeout(15_000)
    _watch_urls(page, urls)
    page.goto(site.url("/"))
    frame = page.frame_locator("iframe[title=Chat]")
    frame.get_by_role("button", name="Chat with us").click()
    frame.get_by_placeholder("Your name").fill("Vera")
    text = f"hello over {'ws' if ws else 'http'}"
    frame.get_by_role("textbox", name="Message").fill(text)
    frame.get_by_role("textbox", name="Message").press("Enter")
    wait_for(lambda: ChatMessage.objects.filter(body=text).exists(), what="the message stored")
    key = f"crmchat:{widget.public_key}"
    token = wait_for(lambda: page.evaluate("k => localStorage.getItem(k)", key), what="token")
    page.evaluate("history.pushState({}, '', '/pricing?plan=pro')")
    wait_for(
        lambda: (
            ChatVisitorPageView.objects.filter(url__endswith="/pricing?plan=pro").count()
            == (1 if ws else 2)
        ),
        what="the page view",
    )
    page.reload()  # the stored token is sent again, and the socket authenticates with it
    frame = page.frame_locator("iframe[title=Chat]")
    frame.get_by_role("button", name="Chat with us").click()
    frame.get_by_text(text).wait_for()
    return context, page, token


def _scan_tables(needle: str) -> list[str]:
    """Every row of every table, as text: where ``needle`` appears."""
    hits = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                text = " ".join(
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
                if needle in text:
                    hits.append(f"{table}: {text[:200]}")
    return hits


class RealSessionTests:
    def test_tokens_and_session_cookies_stay_out_of_urls_logs_and_tables(  # type: ignore[no-untyped-def]
        self, crm, websites, browser: Browser, settings, all_logs: _Records
    ) -> None:
        settings.CRM_CHAT_RATE_LIMITS = NO_RATE_LIMITS
        site = websites("127.0.0.1")
        widget = chat_service.create_widget(
            name="Shop", allowed_origins=[site.origin], offline_message=""
        )
        site.pages["/"] = site.pages["/pricing"] = host_page(widget.embed_snippet())
        owner = create_agent(username="olivia", password="x", role="Owner", validate=False)
        urls: list[str] = []

        # The agent, in the inbox, with a real session cookie.
        agent_context = browser.new_context()
        log_in(agent_context, crm, owner)
        agent_cookie = agent_context.cookies(crm_origin(crm))[0]["value"]
        agent = agent_context.new_page()
        agent.set_default_timeout(15_000)
        _watch_urls(agent, urls)
        agent.goto(f"{crm_origin(crm)}/crm/chat/")

        # Two visitors: one over the WebSocket, one polling over HTTP.
        tokens = []
        for ws in (True, False):
            context, page, token = _visitor_session(browser, site, widget, urls, ws=ws)
            tokens.append(token)
            assert not context.cookies(crm_origin(crm)), "the widget set a cookie"
            visitor = ChatVisitor.objects.get(visitor_token=hash_token(token))
            conv = visitor.conversations.get()
            agent.goto(f"{crm_origin(crm)}{conv.get_absolute_url()}")
            agent.locator("#reply-body").fill(f"reply {len(tokens)}")
            agent.locator("#reply-body").press("Enter")
            reply = f"reply {len(tokens)}"
            wait_for(
                lambda reply=reply: ChatMessage.objects.filter(body=reply).exists(),
                what="the agent's reply stored",
            )
            # A polling widget fetches every 3 s; leave room for a loaded CI machine.
            page.frame_locator("iframe[title=Chat]").get_by_text(reply).wait_for(timeout=45_000)
            context.close()
        agent_context.close()

        # A forged token, over HTTP and over the socket, is refused without being logged.
        forged = secrets.token_urlsafe(48)
        import httpx

        refused = httpx.post(
            f"{crm.url}/p/chat/{widget.public_key}/api/visitor",
            json={},
            headers={"X-Chat-Visitor-Token": forged, "Origin": site.origin},
        )
        assert refused.status_code == 401
        _socket_with(crm, widget, forged, site.origin)

        assert ChatMessage.objects.filter(sender_type="visitor").count() == 2
        assert len(urls) > 20 and any("/p/chat/" in u for u in urls)
        assert any("/ws" in u for u in urls)  # the socket's URL was watched too
        assert len(all_logs.texts) > 10  # uvicorn's access log, at least
        assert any("/p/chat/" in t for t in all_logs.texts)
        secrets_seen = {
            "visitor token": tokens,
            "agent session": [agent_cookie],
            "forged": [forged],
        }
        for what, values in secrets_seen.items():
            for value in values:
                assert not [u for u in urls if value in u], f"{what} in a URL"
                assert not [t for t in all_logs.texts if value in t], f"{what} in the logs"
        for token in tokens:
            assert not _scan_tables(token), "a raw visitor token is stored"
            assert _scan_tables(hash_token(token)), "the digest is stored"
        assert not _scan_tables(forged)


def _socket_with(crm, widget, token: str, origin: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import websockets

    async def go() -> dict:
        async with websockets.connect(
            f"ws://127.0.0.1:{crm.port}/p/chat/{widget.public_key}/ws", origin=origin
        ) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "auth",
                        "token": token,
                        "conversation": "00000000-0000-0000-0000-000000000000",
                        "since": 0,
                    }
                )
            )
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    answer = in_thread(asyncio.run, go())  # Playwright's loop runs in this thread
    assert answer.get("code") == "invalid_token", answer
