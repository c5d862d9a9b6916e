"""The widget on a real host page of another origin, in Debian's Chromium.

The host page is served by a separate HTTP server on 127.0.0.1:<p1>; the product
runs under uvicorn and is addressed as http://localhost:<p2>, so every request the
widget makes is genuinely cross-origin, as on a customer's website.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from crm.chat.demo import serve_demo_site
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitorPageView
from crm.chat.services import chat_service
from crm.core.services import create_agent

pytestmark = pytest.mark.browser


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll the database until ``predicate`` is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout:.0f} s")


@pytest.fixture
def crm(asgi_server, settings):  # type: ignore[no-untyped-def]
    settings.CRM_PUBLIC_URL = f"http://localhost:{asgi_server.port}"
    return asgi_server


@pytest.fixture
def host_site(crm) -> Iterator[Callable[..., str]]:  # type: ignore[no-untyped-def]
    servers = []

    def start(widget, *, port: int = 0) -> str:  # type: ignore[no-untyped-def]
        server = serve_demo_site(host="127.0.0.1", port=port, snippet=widget.embed_snippet())
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _widget_for(origin: str):  # type: ignore[no-untyped-def]
    return chat_service.create_widget(
        name="Shop chat", welcome_message="Hello from the shop!", allowed_origins=[origin]
    )


def _reserve_origin(host_site) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    port = free_port()
    return f"http://127.0.0.1:{port}", port


def _open_and_send(page, text: str, *, name: str = "") -> object:  # type: ignore[no-untyped-def]
    frame = page.frame_locator("iframe[title=Chat]")
    frame.get_by_role("button", name="Chat with us").click()
    if name:
        frame.get_by_placeholder("Your name").fill(name)
    frame.get_by_role("textbox", name="Message").fill(text)
    frame.get_by_role("textbox", name="Message").press("Enter")
    return frame


def _transport(page) -> str:  # type: ignore[no-untyped-def]
    return page.frame(url=lambda u: "/p/chat/" in u).evaluate(
        "document.documentElement.dataset.transport || ''"
    )


def test_a_visitor_chats_across_origins_over_websocket(crm, host_site, page) -> None:  # type: ignore[no-untyped-def]
    origin, port = _reserve_origin(host_site)
    widget = _widget_for(origin)
    host = host_site(widget, port=port)
    owner = create_agent(username="olivia", password="x", role="Owner", validate=False)

    page.goto(host + "/")
    frame = _open_and_send(page, "Do you ship to Canada?", name="Ann")
    conv = wait_for(lambda: ChatConversation.objects.filter(widget=widget).first())
    message = wait_for(
        lambda: ChatMessage.objects.filter(conversation=conv, sender_type="visitor").first()
    )
    assert message.body == "Do you ship to Canada?" and conv.visitor.name == "Ann"
    frame.get_by_text("Do you ship to Canada?").wait_for()

    wait_for(lambda: _transport(page) == "ws")
    crm.call(chat_service.send_agent_message, conversation=conv, agent=owner, body="Yes, we do!")
    frame.get_by_text("Yes, we do!").wait_for()
    assert _transport(page) == "ws"

    trail = wait_for(lambda: list(ChatVisitorPageView.objects.values_list("url", flat=True)))
    assert trail == [host + "/"]
    page.evaluate("history.pushState({}, '', '/pricing')")
    wait_for(lambda: ChatVisitorPageView.objects.filter(url=host + "/pricing").exists())

    page.reload()
    frame = page.frame_locator("iframe[title=Chat]")
    frame.get_by_role("button", name="Chat with us").click()
    frame.get_by_text("Yes, we do!").wait_for()
    frame.get_by_text("Do you ship to Canada?").wait_for()
    assert ChatConversation.objects.count() == 1
    assert conv.visitor.__class__.objects.count() == 1


def test_without_websockets_the_widget_polls(crm, host_site, browser) -> None:  # type: ignore[no-untyped-def]
    origin, port = _reserve_origin(host_site)
    widget = _widget_for(origin)
    host = host_site(widget, port=port)
    owner = create_agent(username="olivia", password="x", role="Owner", validate=False)
    context = browser.new_context()
    context.add_init_script("delete window.WebSocket")  # every frame, the iframe included
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(host + "/")
        frame = _open_and_send(page, "Anyone there?")
        conv = wait_for(lambda: ChatConversation.objects.filter(widget=widget).first())
        crm.call(
            chat_service.send_agent_message, conversation=conv, agent=owner, body="Polling works"
        )
        frame.get_by_text("Polling works").wait_for()
        assert _transport(page) == "poll"
    finally:
        context.close()


def test_a_disallowed_site_gets_no_working_widget(crm, host_site, page) -> None:  # type: ignore[no-untyped-def]
    widget = _widget_for("https://shop.example")
    host = host_site(widget)
    page.goto(host + "/")
    page.wait_for_timeout(500)
    assert page.locator("iframe[title=Chat]").count() == 0  # the loader stays out

    # Framing the widget page directly is refused by its CSP frame-ancestors.
    widget_url = f"{crm.url.replace('127.0.0.1', 'localhost')}/p/chat/{widget.public_key}"
    page.set_content(f'<iframe id="f" src="{widget_url}"></iframe>')
    page.wait_for_timeout(1000)
    frame = page.frame(url=widget_url)
    assert frame is None or frame.locator("#launcher").count() == 0

    # And the API refuses the page's origin.
    page.goto(host + "/")
    status = page.evaluate(
        """url => fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                              body: '{}'}).then(r => r.status, () => 'blocked')""",
        f"{widget_url}/api/visitor",
    )
    assert status in (403, "blocked")
    assert not ChatConversation.objects.exists()
