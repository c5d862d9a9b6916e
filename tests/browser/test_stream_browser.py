"""Reconnect and resume through the shared stream client (stream.js), in Chromium.

The widget (visitor) and the inbox conversation page (agent) each talk to the real
server, but their sockets run through Playwright's WebSocket routing, so a test can
cut a socket, refuse new ones, swallow frames or add one, and the HTTP fallback can be
switched off alongside. While a page is cut off, the other side keeps writing through
ChatService; once it is back, every message must be on the page exactly once, in seq
order, and what was typed meanwhile must be stored once, under its first client_id.

Routed frames are relayed by this test's thread, so every wait here is a Playwright
wait (it pumps the relay), never a bare sleep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    Route,
    WebSocketRoute,
    expect,
)

from crm.chat import events
from crm.chat.models import ChatConversation, ChatMessage
from crm.chat.services import chat_service
from crm.core.roles import OWNER
from crm.core.services import create_agent
from tests.browser.test_widget_browser import (  # noqa: F401  (crm, host_site: fixtures)
    _open_and_send,
    _reserve_origin,
    _widget_for,
    crm,
    host_site,
)

pytestmark = pytest.mark.browser

PASSWORD = "stream-browser-pass-1"
# Generous: a page that lost its socket retries with backoff (1, 2, 4 … s) and polls
# every few seconds; nothing here measures how fast that happens.
TIMEOUT_MS = 45_000


def _always(ws: WebSocketRoute, frame: dict[str, Any]) -> bool:
    return True


class Cutoff:
    """A page's chat sockets (and its HTTP message endpoints) behind a switch.

    ``offline``: new sockets are closed at once; ``http_offline``: the matching HTTP
    requests fail as on a dead network. ``to_server(ws, frame)`` / ``to_page(ws,
    frame)``: frames they say no to are swallowed. ``sent``: every frame the page sent
    on a socket, ``received``: every frame relayed to it; ``posted``: every JSON body
    it sent to the matching HTTP endpoints; ``in_flight``: the matching requests not
    answered yet (a poll started before the socket was ready still lands after it).
    """

    def __init__(self, page: Page, socket_url: re.Pattern[str], http_url: re.Pattern[str]):
        self.page = page
        self.offline = False
        self.http_offline = False
        self.to_server: Callable[[WebSocketRoute, dict[str, Any]], bool] = _always
        self.to_page: Callable[[WebSocketRoute, dict[str, Any]], bool] = _always
        self.sockets: list[WebSocketRoute] = []
        self.sent: list[dict[str, Any]] = []
        self.posted: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.in_flight: set[Request] = set()
        page.route_web_socket(socket_url, self._socket)
        page.route(http_url, self._http)
        self.http_url = http_url
        page.on("request", self._request)
        page.on("requestfinished", self._answered)
        page.on("requestfailed", self._answered)

    def _socket(self, ws: WebSocketRoute) -> None:
        if self.offline:
            self.refused += 1
            ws.close()
            return
        server = ws.connect_to_server()
        self.sockets.append(ws)

        def from_page(message: str | bytes) -> None:
            self.sent.append(json.loads(message))
            if self.to_server(ws, json.loads(message)):
                server.send(message)

        def from_server(message: str | bytes) -> None:
            if self.to_page(ws, json.loads(message)):
                self.received.append(json.loads(message))
                ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    def _request(self, request: Request) -> None:
        if self.http_url.search(request.url):
            self.in_flight.add(request)

    def _answered(self, request: Request) -> None:
        self.in_flight.discard(request)

    def _http(self, route: Route) -> None:
        if route.request.method == "POST":
            self.posted.append(route.request.post_data_json)
        if self.http_offline:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    def cut(self) -> None:
        """Drop the live sockets, refuse new ones and fail HTTP, until switched back."""
        self.offline = self.http_offline = True
        for ws in self.sockets:
            ws.close()
        self.sockets.clear()

    def inject(self, frame: dict[str, Any]) -> None:
        """Hand the page a frame as if the server had sent it."""
        self.sockets[-1].send(json.dumps(frame))

    def wait(self, predicate: Callable[[], object], what: str) -> None:
        for _ in range(TIMEOUT_MS // 100):
            if predicate():
                return
            self.page.wait_for_timeout(100)  # relays routed frames meanwhile
        raise AssertionError(f"{what}: not within {TIMEOUT_MS // 1000} s")

    def settle(self) -> None:
        """Wait until the page has no matching HTTP request on the way: what the test
        writes next can then only reach it over the socket (or not at all)."""
        self.wait(lambda: not self.in_flight, "HTTP requests answered")


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        yield opened
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default, for other modules
        for context in opened:
            context.close()


def _new_page(browser: Browser, contexts: list[BrowserContext]) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    contexts.append(context)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def _lost_event(server, fn, /, **kwargs):  # type: ignore[no-untyped-def]
    """Write through ChatService, but lose the live event, as a restarting broker can."""

    def write():  # type: ignore[no-untyped-def]
        with mock.patch.object(events, "send_now", lambda groups, event: None):
            return fn(**kwargs)

    return server.call(write)


# ---------------------------------------------------------------- the widget


def _visitor_page(server, start_site, browser, contexts):  # type: ignore[no-untyped-def]
    origin, port = _reserve_origin(start_site)
    widget = _widget_for(origin)
    host = start_site(widget, port=port)
    owner = server.call(
        create_agent, username="olivia", password=PASSWORD, role=OWNER, validate=False
    )
    page = _new_page(browser, contexts)
    cutoff = Cutoff(
        page,
        re.compile(r"/p/chat/[^/]+/ws$"),
        re.compile(r"/p/chat/[^/]+/api/conversations/[^/]+/messages"),
    )
    page.goto(host + "/")
    frame = _open_and_send(page, "hello")
    cutoff.wait(lambda: ChatMessage.objects.filter(body="hello").exists(), "first message")
    conv = ChatConversation.objects.get(widget=widget)
    expect(frame.locator("html")).to_have_attribute("data-transport", "ws")
    cutoff.settle()
    return page, frame, cutoff, conv, owner


def _widget_log(frame) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """(seq, text) of every stored message the widget shows, in page order."""
    rows = frame.locator("#log .msg[data-seq]").evaluate_all(
        """nodes => nodes.filter(n => n.dataset.seq).map(n => [
             +n.dataset.seq,
             [...n.childNodes].filter(c => c.nodeType === 3).map(c => c.data).join("")])"""
    )
    return [(seq, text) for seq, text in rows]


def _assert_once_in_order(shown: list[tuple[int, str]], conv: ChatConversation) -> None:
    stored = [
        (m.seq, m.body)
        for m in ChatMessage.objects.filter(conversation=conv, is_internal=False).order_by("seq")
    ]
    assert shown == stored, f"shown {shown}, stored {stored}"


def _assert_sent_once_under_one_id(cutoff: Cutoff, body: str) -> None:
    """Stored once, and every try (socket or HTTP) carried the id it got when typed."""
    (stored,) = ChatMessage.objects.filter(body=body)
    tries = [f for f in cutoff.sent + cutoff.posted if f.get("body") == body]
    assert tries and {f["client_id"] for f in tries} == {stored.client_id}


def test_the_widget_resumes_after_its_socket_drops(  # type: ignore[no-untyped-def]
    crm,  # noqa: F811
    host_site,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    _, frame, cutoff, conv, owner = _visitor_page(crm, host_site, browser, contexts)
    crm.call(chat_service.send_agent_message, conversation=conv, agent=owner, body="a1")
    expect(frame.get_by_text("a1")).to_be_visible()

    cutoff.cut()
    expect(frame.locator("html")).to_have_attribute("data-transport", "poll")
    for body in ("a2", "a3", "a4"):
        crm.call(chat_service.send_agent_message, conversation=conv, agent=owner, body=body)
    box = frame.get_by_role("textbox", name="Message")
    box.fill("typed while offline")
    box.press("Enter")
    mine = frame.locator(".msg.me").filter(has_text="typed while offline")
    expect(mine).to_contain_text("Sending…")
    cutoff.wait(lambda: cutoff.refused >= 1, "a reconnect attempt refused")
    assert not ChatMessage.objects.filter(body="typed while offline").exists()

    cutoff.offline = False  # sockets only: the HTTP fallback stays dead
    expect(frame.locator("html")).to_have_attribute("data-transport", "ws")
    expect(frame.get_by_text("a4")).to_be_visible()
    expect(mine).not_to_contain_text("Sending…")

    _assert_sent_once_under_one_id(cutoff, "typed while offline")
    shown = _widget_log(frame)
    _assert_once_in_order(shown, conv)
    expected = ["hello", "a1", "a2", "a3", "a4", "typed while offline"]
    assert [t for _, t in shown if t in expected] == expected


@pytest.mark.parametrize("lost", ["send", "ack"])
def test_a_send_cut_off_mid_flight_is_stored_once(  # type: ignore[no-untyped-def]
    crm,  # noqa: F811
    host_site,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
    lost: str,
) -> None:
    """The socket dies with a send in flight: before the server got it, or after it
    stored it but before the page heard back. Either way it ends up stored once."""
    _, frame, cutoff, conv, _ = _visitor_page(crm, host_site, browser, contexts)
    socket = cutoff.sockets[-1]

    def cut_at(kind: set[str]) -> Callable[[WebSocketRoute, dict[str, Any]], bool]:
        def relay(ws: WebSocketRoute, frame_: dict[str, Any]) -> bool:
            if ws is socket and frame_.get("type") in kind:
                socket.close()
                return False
            return True

        return relay

    if lost == "send":
        cutoff.to_server = cut_at({"send"})  # never reaches the server
    else:
        cutoff.to_page = cut_at({"ack", "message"})  # stored, but the page never hears

    box = frame.get_by_role("textbox", name="Message")
    box.fill("in flight")
    box.press("Enter")
    cutoff.wait(lambda: len(cutoff.sockets) >= 2, "a new socket")
    mine = frame.locator(".msg.me").filter(has_text="in flight")
    expect(mine).not_to_contain_text("Sending…")

    _assert_sent_once_under_one_id(cutoff, "in flight")
    assert frame.locator(".msg.me").filter(has_text="in flight").count() == 1
    _assert_once_in_order(_widget_log(frame), conv)


def test_the_widget_asks_for_what_a_heartbeat_shows_it_missed(  # type: ignore[no-untyped-def]
    crm,  # noqa: F811
    host_site,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    page, frame, cutoff, conv, owner = _visitor_page(crm, host_site, browser, contexts)
    message = _lost_event(
        crm, chat_service.send_agent_message, conversation=conv, agent=owner, body="lost"
    ).message
    page.wait_for_timeout(500)
    assert frame.get_by_text("lost").count() == 0  # nothing told the page

    cutoff.inject({"type": "pong", "last_seq": message.seq})
    expect(frame.get_by_text("lost")).to_be_visible()
    syncs = [f["since"] for f in cutoff.sent if f.get("type") == "sync"]
    assert syncs and syncs[-1] < message.seq  # resumed from before the lost one
    _assert_once_in_order(_widget_log(frame), conv)


# ------------------------------------------------------ the conversation page


def _agent_on_a_chat(server, browser, contexts):  # type: ignore[no-untyped-def]
    def chat():  # type: ignore[no-untyped-def]
        create_agent(username="olivia", password=PASSWORD, role=OWNER, validate=False)
        widget = chat_service.create_widget(name="Site", offline_message="")
        visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
        conv = chat_service.open_conversation(visitor=visitor)
        chat_service.send_visitor_message(conversation=conv, visitor=visitor, body="v1")
        return conv, visitor

    conv, visitor = server.call(chat)
    page = _new_page(browser, contexts)
    cutoff = Cutoff(
        page,
        re.compile(r"/crm/chat/ws$"),
        re.compile(r"/crm/chat/[0-9a-f-]+/(messages|send)/"),
    )
    base = f"http://localhost:{server.port}"
    page.goto(base + "/login/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/crm/")
    page.goto(base + conv.get_absolute_url())
    expect(page.locator("html")).to_have_attribute("data-transport", "ws")
    # Set when the page asks; wait for the answer too, so what the test writes next
    # can't slip into that first replay.
    cutoff.wait(lambda: any(f["type"] == "subscribed" for f in cutoff.received), "subscribed")
    cutoff.settle()
    return page, cutoff, conv, visitor


def _transcript(page: Page) -> list[tuple[int, str]]:
    rows = page.locator("#transcript .bubble[data-seq]").evaluate_all(
        "nodes => nodes.map(n => [+n.dataset.seq, n.querySelector('.text').textContent])"
    )
    return [(seq, text) for seq, text in rows]


def test_the_conversation_page_resumes_after_its_socket_drops(  # type: ignore[no-untyped-def]
    crm,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    page, cutoff, conv, visitor = _agent_on_a_chat(crm, browser, contexts)
    transcript = page.get_by_role("log", name="Messages")
    crm.call(chat_service.send_visitor_message, conversation=conv, visitor=visitor, body="v2")
    expect(transcript).to_contain_text("v2")

    cutoff.cut()
    expect(page.locator("html")).to_have_attribute("data-transport", "poll")
    for body in ("v3", "v4", "v5"):
        crm.call(chat_service.send_visitor_message, conversation=conv, visitor=visitor, body=body)
    box = page.get_by_role("textbox", name=re.compile(r"^Reply to "))
    box.fill("typed while offline")
    box.press("Enter")
    mine = page.locator("#transcript .bubble.agent").filter(has_text="typed while offline")
    expect(mine.locator(".state")).to_have_text("Sending…")
    cutoff.wait(lambda: cutoff.refused >= 1, "a reconnect attempt refused")
    assert not ChatMessage.objects.filter(body="typed while offline").exists()

    cutoff.offline = False  # sockets only: polling and the HTTP send stay dead
    expect(page.locator("html")).to_have_attribute("data-transport", "ws")
    expect(transcript).to_contain_text("v5")
    expect(mine.locator(".state")).to_have_text(re.compile(r"^(Sent|Read)$"))

    _assert_sent_once_under_one_id(cutoff, "typed while offline")
    shown = _transcript(page)
    _assert_once_in_order(shown, conv)
    expected = ["v1", "v2", "v3", "v4", "v5", "typed while offline"]
    assert [t for _, t in shown if t in expected] == expected


def test_the_conversation_page_asks_for_what_a_heartbeat_shows_it_missed(  # type: ignore[no-untyped-def]
    crm,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    page, cutoff, conv, visitor = _agent_on_a_chat(crm, browser, contexts)
    message = _lost_event(
        crm, chat_service.send_visitor_message, conversation=conv, visitor=visitor, body="lost"
    ).message
    transcript = page.get_by_role("log", name="Messages")
    page.wait_for_timeout(500)
    expect(transcript).not_to_contain_text("lost")

    cutoff.inject({"type": "pong", "last_seqs": {str(conv.external_id): message.seq}})
    expect(transcript).to_contain_text("lost")
    subscribes = [f["since"] for f in cutoff.sent if f.get("type") == "subscribe"]
    assert len(subscribes) >= 2 and subscribes[-1] < message.seq  # asked again, from before it
    _assert_once_in_order(_transcript(page), conv)
