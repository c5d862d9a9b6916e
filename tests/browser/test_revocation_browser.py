"""An open inbox page in Chromium loses what its agent lost, without a reload by hand.

The conversation page follows the chat over the agent socket; a change made by
someone else (reassignment, deactivation) reaches the open page through the
revocation event, and the page says so or goes back to the login.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, BrowserContext, Page, expect

from crm.chat.models import ChatConversation
from crm.chat.services import chat_service
from crm.core.roles import EMPLOYEE, OWNER
from crm.core.services import create_agent
from tests.browser.test_widget_browser import crm  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser
PASSWORD = "revocation-browser-1"


@pytest.fixture
def agent_page(browser: Browser) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
    finally:
        context.close()


def _employee_on_a_chat(page: Page, base: str) -> tuple[ChatConversation, object, object]:
    owner = create_agent(username="olivia", password=PASSWORD, role=OWNER, validate=False)
    emma = create_agent(username="emma", password=PASSWORD, role=EMPLOYEE, validate=False)
    widget = chat_service.create_widget(name="Site", offline_message="")
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
    conv = chat_service.open_conversation(visitor=visitor)
    chat_service.send_visitor_message(conversation=conv, visitor=visitor, body="Anyone there?")
    page.goto(base + "/login/")
    page.get_by_label("Username").fill("emma")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/crm/")
    page.goto(base + conv.get_absolute_url())
    expect(page.locator("html")).to_have_attribute("data-agent-transport", "ws")
    return conv, owner, emma


def test_a_chat_reassigned_away_is_closed_on_the_open_page(crm, agent_page: Page) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    base = f"http://localhost:{crm.port}"
    conv, owner, _ = _employee_on_a_chat(agent_page, base)
    box = agent_page.get_by_role("textbox", name=re.compile(r"^Reply to "))
    expect(box).to_be_enabled()

    crm.call(chat_service.assign_conversation, conversation=conv, agent=owner, by=owner)

    expect(agent_page.locator("#reply-error")).to_have_text(
        "You no longer have access to this chat."
    )
    expect(box).to_be_disabled()


def test_a_deactivated_agent_is_sent_back_to_the_login(crm, agent_page: Page) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    base = f"http://localhost:{crm.port}"
    _, _, emma = _employee_on_a_chat(agent_page, base)

    def deactivate() -> None:
        user = get_user_model().objects.get(pk=emma.pk)  # type: ignore[attr-defined]
        user.is_active = False
        user.save()

    crm.call(deactivate)

    agent_page.wait_for_url("**/login/**")
    expect(agent_page.get_by_label("Username")).to_be_visible()
