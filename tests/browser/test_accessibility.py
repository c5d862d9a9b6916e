"""Accessibility audit (axe-core in Chromium) of the inbox, settings and widget pages.

axe-core comes bundled with axe-playwright-python, so the audit runs offline. The
bar is: no violation of impact "serious" or "critical" on any audited page state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from playwright.sync_api import Browser, Page

from crm.chat.models import ChatConversation, ChatVisitor
from crm.chat.services import chat_service
from crm.core.roles import OWNER
from crm.core.services import create_agent

pytestmark = pytest.mark.browser

PASSWORD = "axe-audit-pass-1"
BLOCKING = {"serious", "critical"}
# WCAG 2.1 A and AA plus axe's best practices (landmarks, headings, regions).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def audit(page: Page) -> list[dict]:
    """Violations on the page as it is now, blocking or not."""
    results = Axe().run(page, options=AXE_OPTIONS).response
    # An audit that checked nothing must not pass as a clean one.
    assert results["testEngine"]["name"] == "axe-core" and len(results["passes"]) > 10
    return results["violations"]


def blocking(violations: list[dict]) -> list[str]:
    """One line per serious/critical violation, naming the rule and the elements."""
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(" ".join(n["target"]) for n in v["nodes"])
        for v in violations
        if v["impact"] in BLOCKING
    ]


@pytest.fixture
def agent_page(asgi_server, browser: Browser) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    create_agent(
        username="olivia", password=PASSWORD, role=OWNER, first_name="Olivia", validate=False
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(asgi_server.url + "/login/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/crm/")
    yield page
    context.close()


def _busy_inbox(owner: AbstractUser) -> ChatConversation:
    """A few chats in every state the list and the conversation view can show."""
    widget = chat_service.create_widget(name="Shop chat", allowed_origins=["https://shop.example"])
    convs = []
    for name, email, says in [
        ("Ann Lee", "ann@example.com", "Do you ship to Canada?"),
        ("", "", "Is there a student discount?"),
        ("Bo", "", "Where is my order?"),
    ]:
        visitor, _ = chat_service.identify_visitor(
            widget=widget,
            token=None,
            ip_address="81.2.69.142",
            user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        chat_service.update_visitor_details(visitor=visitor, name=name, email=email)
        chat_service.record_page_view(visitor=visitor, url="https://shop.example/", title="Home")
        chat_service.record_page_view(visitor=visitor, url="https://shop.example/pricing")
        conv = chat_service.open_conversation(visitor=visitor)
        chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=says)
        convs.append(conv)
    first = convs[0]
    chat_service.send_agent_message(conversation=first, agent=owner, body="Yes, we do!")
    chat_service.send_system_message(conversation=first, body="VIP customer", internal=True)
    chat_service.send_visitor_message(
        conversation=first, visitor=ChatVisitor.objects.get(pk=first.visitor_id), body="Great"
    )
    chat_service.assign_conversation(conversation=convs[2], agent=owner, by=owner)
    # An earlier, closed chat of the same visitor fills the "Other chats" list.
    chat_service.close_conversation(conversation=first, by=owner)
    again = chat_service.open_conversation(visitor=ChatVisitor.objects.get(pk=first.visitor_id))
    chat_service.send_visitor_message(
        conversation=again, visitor=ChatVisitor.objects.get(pk=first.visitor_id), body="Me again"
    )
    return again


def test_agent_pages_have_no_serious_violations(asgi_server, agent_page: Page) -> None:  # type: ignore[no-untyped-def]
    owner = get_user_model().objects.get(username="olivia")
    conv = _busy_inbox(owner)
    page = agent_page
    found: dict[str, list[dict]] = {}

    page.goto(asgi_server.url + "/crm/chat/")
    page.get_by_role("link", name=conv.chat_id).wait_for()
    found["inbox list"] = audit(page)
    page.get_by_role("link", name="Pending").click()
    page.get_by_text("No pending chats.").wait_for()
    found["inbox list, empty tab"] = audit(page)

    page.goto(asgi_server.url + conv.get_absolute_url())
    page.get_by_role("log", name="Messages").get_by_text("Me again").wait_for()
    page.wait_for_function("() => document.documentElement.dataset.transport === 'ws'")
    found["conversation"] = audit(page)
    page.get_by_role("button", name="Mark pending").click()
    page.get_by_text(f"Chat {conv.chat_id} is pending.").wait_for()
    found["conversation, after an action"] = audit(page)
    page.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Reopen").wait_for()
    found["conversation, closed"] = audit(page)

    page.goto(asgi_server.url + "/crm/chat-widgets/new/")
    page.get_by_role("heading", level=1).wait_for()
    found["widget settings"] = audit(page)
    page.get_by_label("Name").fill("")
    page.get_by_role("button", name="Create widget").click()
    page.locator(".field-error").first.wait_for()
    found["widget settings, with errors"] = audit(page)

    problems = {name: blocking(v) for name, v in found.items() if blocking(v)}
    assert not problems, problems


def test_the_visitor_widget_has_no_serious_violations(asgi_server, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    widget = chat_service.create_widget(
        name="Shop chat", welcome_message="Hello from the shop!", allowed_origins=[]
    )
    context = browser.new_context(viewport={"width": 360, "height": 640})
    page = context.new_page()
    page.set_default_timeout(15_000)
    found: dict[str, list[dict]] = {}
    try:
        # Opened directly (not framed by a host page) the chat starts open.
        page.goto(f"{asgi_server.url}/p/chat/{widget.public_key}")
        box = page.get_by_role("textbox", name="Message")
        box.wait_for()
        page.get_by_text("Hello from the shop!").wait_for()
        found["widget open"] = audit(page)
        box.fill("Hello there")
        box.press("Enter")
        page.get_by_role("log", name="Messages").get_by_text("Hello there").wait_for()
        found["widget with messages"] = audit(page)
        page.get_by_role("button", name="Minimise chat").first.click()
        page.get_by_role("button", name="Chat with us").wait_for()
        found["widget minimised"] = audit(page)
        conv = ChatConversation.objects.get()
        owner = create_agent(username="olivia", password=PASSWORD, role=OWNER, validate=False)
        asgi_server.call(
            chat_service.send_agent_message, conversation=conv, agent=owner, body="Hi!"
        )
        page.get_by_role("button", name="Chat with us, 1 unread").wait_for()
        found["widget minimised, unread badge"] = audit(page)
    finally:
        context.close()
    problems = {name: blocking(v) for name, v in found.items() if blocking(v)}
    assert not problems, problems


def test_a_live_list_refresh_keeps_keyboard_focus(asgi_server, agent_page: Page) -> None:  # type: ignore[no-untyped-def]
    """A keyboard user on a row link stays there when a new message re-renders the list."""
    _busy_inbox(get_user_model().objects.get(username="olivia"))
    first, second = ChatConversation.objects.filter(status="open").order_by("number")[:2]
    page = agent_page
    page.goto(asgi_server.url + "/crm/chat/")
    page.wait_for_function("() => document.documentElement.dataset.agentTransport === 'ws'")
    link = page.get_by_role("link", name=second.chat_id, exact=True)
    link.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    focused = second.get_absolute_url()
    assert page.evaluate("document.activeElement.getAttribute('href')") == focused

    asgi_server.call(
        chat_service.send_visitor_message,
        conversation=first,
        visitor=ChatVisitor.objects.get(pk=first.visitor_id),
        body="A brand new question",
    )
    page.get_by_role("row").filter(has_text="A brand new question").wait_for()

    assert page.evaluate("document.activeElement.getAttribute('href')") == focused
