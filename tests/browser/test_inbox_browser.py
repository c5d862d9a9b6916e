"""The agent inbox end to end: a visitor on another origin and an agent, in Chromium.

The visitor's host page is served from http://127.0.0.1:<p1> and embeds the widget
of the product at http://localhost:<p2>; the agent works in a second browser
context on http://localhost:<p2>. Nothing here writes behind the browsers' backs:
every message, reply and action goes through the real pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import AbstractUser
from playwright.sync_api import Browser, BrowserContext, Page, expect

from crm.chat.models import ChatConversation, ChatMessage
from crm.core.models import Lead, Person
from crm.core.roles import OWNER
from crm.core.services import create_agent
from tests.browser.test_widget_browser import (  # noqa: F401  (crm, host_site: fixtures)
    _open_and_send,
    _reserve_origin,
    _transport,
    _widget_for,
    crm,
    host_site,
    wait_for,
)

pytestmark = pytest.mark.browser

PASSWORD = "inbox-browser-pass-1"
# The list falls back to polling every 4 s; give each wait a few rounds, no more.
TIMEOUT_MS = 20_000
NO_WEBSOCKET = "delete window.WebSocket"


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


def _new_page(browser: Browser, contexts: list[BrowserContext], *, websockets: bool) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    contexts.append(context)
    if not websockets:
        context.add_init_script(NO_WEBSOCKET)  # every frame, the widget's iframe included
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def _log_in_to_inbox(agent: Page, crm_url: str) -> AbstractUser:
    user = create_agent(
        username="olivia", password=PASSWORD, role=OWNER, first_name="Olivia", validate=False
    )
    agent.goto(crm_url + "/login/")
    agent.get_by_label("Username").fill("olivia")
    agent.get_by_label("Password").fill(PASSWORD)
    agent.get_by_role("button", name="Log in").click()
    agent.wait_for_url("**/crm/")
    agent.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Chat", exact=True
    ).click()
    agent.wait_for_url("**/crm/chat/")
    expect(agent.get_by_text("No open chats.")).to_be_visible()
    # A marker that only survives if the page is never reloaded.
    agent.evaluate("window.__sameInboxPage = true")
    return user


def _sees_new_chat_live(agent: Page, text: str) -> None:
    row = agent.get_by_role("row").filter(has_text=text)
    expect(row).to_be_visible()
    expect(row.get_by_role("link", name="C1001")).to_be_visible()
    assert agent.evaluate("window.__sameInboxPage === true"), "the inbox was reloaded"
    assert agent.url.endswith("/crm/chat/")


def _html_dataset(page: Page, key: str) -> str:
    return page.evaluate(f"document.documentElement.dataset.{key} || ''")


def _reply(agent: Page, text: str) -> None:
    box = agent.get_by_role("textbox", name=re.compile(r"^Reply to "))
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")
    bubble = agent.locator("#transcript .bubble.agent").filter(has_text=text)
    expect(bubble.locator(".state")).to_have_text(re.compile(r"^(Sent|Read)$"))


def _lead_page_shows_transcript(agent: Page, *lines: str) -> Lead:
    agent.wait_for_url("**/crm/leads/*-*/")
    lead = Lead.objects.get()
    assert agent.url.endswith(lead.get_absolute_url())
    notes = agent.locator("#notes")
    expect(notes).to_contain_text("Chat C1001 transcript")
    for line in lines:
        expect(notes).to_contain_text(line)
    return lead


def test_a_visitor_and_an_agent_chat_live_over_websockets(
    crm,  # noqa: F811
    host_site,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    origin, port = _reserve_origin(host_site)
    widget = _widget_for(origin)
    host = host_site(widget, port=port)
    crm_url = f"http://localhost:{crm.port}"
    visitor = _new_page(browser, contexts, websockets=True)
    agent = _new_page(browser, contexts, websockets=True)

    owner = _log_in_to_inbox(agent, crm_url)
    wait_for(lambda: _html_dataset(agent, "agentTransport") == "ws")

    visitor.goto(host + "/")
    frame = _open_and_send(visitor, "Do you ship to Canada?", name="Ann")
    _sees_new_chat_live(agent, "Do you ship to Canada?")

    agent.get_by_role("link", name="C1001").click()
    conv = ChatConversation.objects.get()
    agent.wait_for_url(f"**{conv.get_absolute_url()}")
    wait_for(lambda: _html_dataset(agent, "transport") == "ws")
    expect(agent.get_by_role("log", name="Messages")).to_contain_text("Do you ship to Canada?")

    _reply(agent, "Yes, we do!")
    expect(frame.get_by_text("Yes, we do!")).to_be_visible()
    assert _transport(visitor) == "ws" and _html_dataset(agent, "transport") == "ws"
    reply = ChatMessage.objects.get(conversation=conv, sender_type="user")
    assert (reply.body, reply.sender_id) == ("Yes, we do!", owner.pk)

    agent.get_by_role("button", name="Convert to lead").click()
    lead = _lead_page_shows_transcript(agent, "Ann: Do you ship to Canada?", "Olivia: Yes, we do!")
    # The visitor gave a name, so converting also made them a person.
    person = Person.objects.get()
    assert lead.person == person
    agent.get_by_role("link", name="Ann", exact=True).click()
    agent.wait_for_url(f"**{person.get_absolute_url()}")
    expect(agent.get_by_role("heading", level=1)).to_have_text("Ann")
    expect(agent.get_by_role("link", name=lead.title)).to_be_visible()

    agent.goto(crm_url + conv.get_absolute_url())
    sidebar = agent.get_by_role("complementary", name="Visitor")
    expect(sidebar.get_by_role("link", name="Ann", exact=True)).to_have_attribute(
        "href", person.get_absolute_url()
    )
    expect(sidebar.get_by_role("button", name="Promote to person")).to_have_count(0)
    expect(agent.get_by_role("link", name="View lead")).to_have_attribute(
        "href", lead.get_absolute_url()
    )
    wait_for(lambda: _html_dataset(agent, "transport") == "ws")


def test_without_websockets_inbox_and_widget_fall_back_to_polling(
    crm,  # noqa: F811
    host_site,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    origin, port = _reserve_origin(host_site)
    widget = _widget_for(origin)
    host = host_site(widget, port=port)
    crm_url = f"http://localhost:{crm.port}"
    visitor = _new_page(browser, contexts, websockets=False)
    agent = _new_page(browser, contexts, websockets=False)

    _log_in_to_inbox(agent, crm_url)
    assert agent.evaluate("typeof window.WebSocket") == "undefined"

    visitor.goto(host + "/")
    frame = _open_and_send(visitor, "Anyone there?", name="Bea Kim")
    _sees_new_chat_live(agent, "Anyone there?")

    agent.get_by_role("link", name="C1001").click()
    conv = ChatConversation.objects.get()
    agent.wait_for_url(f"**{conv.get_absolute_url()}")
    wait_for(lambda: _html_dataset(agent, "transport") == "poll", timeout=TIMEOUT_MS / 1000)
    expect(agent.get_by_role("log", name="Messages")).to_contain_text("Anyone there?")

    _reply(agent, "Polling works")
    expect(frame.get_by_text("Polling works")).to_be_visible()
    assert _transport(visitor) == "poll"

    # A second visitor message reaches the open conversation by polling too.
    frame.get_by_role("textbox", name="Message").fill("Great, thanks")
    frame.get_by_role("textbox", name="Message").press("Enter")
    expect(agent.get_by_role("log", name="Messages")).to_contain_text("Great, thanks")

    sidebar = agent.get_by_role("complementary", name="Visitor")
    sidebar.get_by_role("button", name="Promote to person").click()
    agent.wait_for_url(f"**{conv.get_absolute_url()}")
    person = Person.objects.get()
    expect(sidebar.get_by_role("link", name="Bea Kim", exact=True)).to_have_attribute(
        "href", person.get_absolute_url()
    )

    agent.get_by_role("button", name="Convert to lead").click()
    lead = _lead_page_shows_transcript(
        agent, "Bea Kim: Anyone there?", "Olivia: Polling works", "Bea Kim: Great, thanks"
    )
    assert lead.person == person and Person.objects.count() == 1
    agent.get_by_role("link", name="Bea Kim", exact=True).click()
    agent.wait_for_url(f"**{person.get_absolute_url()}")
    expect(agent.get_by_role("link", name=lead.title)).to_be_visible()


def test_the_transcript_shows_the_agents_local_time(
    crm,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    """Server-rendered and live messages both show the browser's time zone, not UTC."""
    from datetime import UTC, datetime

    import time_machine

    from crm.chat.services import chat_service

    context = browser.new_context(timezone_id="Asia/Tokyo")  # UTC+9, no summer time
    contexts.append(context)
    agent = context.new_page()
    _log_in_to_inbox(agent, f"http://localhost:{crm.port}")
    widget = chat_service.create_widget(name="Site")
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
    with time_machine.travel(datetime(2026, 3, 1, 8, 5, tzinfo=UTC), tick=False):
        conv = chat_service.open_conversation(visitor=visitor)
        chat_service.send_visitor_message(conversation=conv, visitor=visitor, body="Morning")

    agent.goto(f"http://localhost:{crm.port}{conv.get_absolute_url()}")

    expect(agent.locator("#transcript .bubble.visitor time")).to_have_text("17:05")


# Records what agent.js asks of the browser (the real APIs still run) and lets the
# test say whether the tab is in the background.
ALERT_SPY = """
window.__notes = []; window.__beeps = 0;
(() => {
  const Real = window.Notification;
  class Spy extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({ title, body: options && options.body, tag: options && options.tag });
    }
  }
  Object.defineProperty(Spy, "permission", { get: () => Real.permission });
  Spy.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Spy;
  const make = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () { window.__beeps++; return make.call(this); };
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => !!window.__hidden });
})();
"""


def test_a_background_tab_alerts_the_agent_as_chosen(
    crm,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    from crm.chat.services import chat_service

    crm_url = f"http://localhost:{crm.port}"
    context = browser.new_context()
    contexts.append(context)
    context.grant_permissions(["notifications"], origin=crm_url)
    context.add_init_script(ALERT_SPY)
    agent = context.new_page()
    agent.set_default_timeout(TIMEOUT_MS)
    owner = _log_in_to_inbox(agent, crm_url)
    wait_for(lambda: _html_dataset(agent, "agentTransport") == "ws")
    agent.get_by_label("Play a sound").check()
    agent.get_by_label("Show desktop notifications").check()
    expect(agent.get_by_label("Show desktop notifications")).to_be_checked()
    assert agent.evaluate("window.__beeps") == 1  # turning the sound on plays it once
    agent.evaluate("window.__beeps = 0")

    widget = chat_service.create_widget(name="Site")
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
    chat_service.update_visitor_details(visitor=visitor, name="Ann <i>")
    conv = chat_service.open_conversation(visitor=visitor)
    crm.call(chat_service.send_visitor_message, conversation=conv, visitor=visitor, body="seen")
    expect(agent.locator(f"#chat-link-{conv.external_id}")).to_be_visible()
    assert agent.evaluate("[window.__notes.length, window.__beeps]") == [0, 0]  # tab in view

    agent.evaluate("window.__hidden = true")
    body = "<img src=x onerror=alert(1)> are you there?"
    crm.call(chat_service.send_visitor_message, conversation=conv, visitor=visitor, body=body)
    agent.wait_for_function("() => window.__notes.length === 1")

    note = agent.evaluate("window.__notes[0]")
    assert note == {"title": "Ann <i>", "body": body, "tag": f"crm-chat:{conv.external_id}"}
    assert agent.evaluate("window.__beeps") >= 1
    # An agent's reply is no reason to alert; the visitor's next message is.
    crm.call(chat_service.send_agent_message, conversation=conv, agent=owner, body="hi")
    crm.call(chat_service.send_visitor_message, conversation=conv, visitor=visitor, body="2nd")
    agent.wait_for_function("() => window.__notes.some(n => n.body === '2nd')")
    assert agent.evaluate("window.__notes.map(n => n.body)") == [body, "2nd"]

    agent.reload()
    expect(agent.get_by_label("Play a sound")).to_be_checked()
    expect(agent.get_by_label("Show desktop notifications")).to_be_checked()


def test_desktop_alerts_stay_off_when_the_browser_refuses(
    crm,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    crm_url = f"http://localhost:{crm.port}"
    context = browser.new_context()  # no permission granted: headless Chromium denies
    contexts.append(context)
    agent = context.new_page()
    agent.set_default_timeout(TIMEOUT_MS)
    _log_in_to_inbox(agent, crm_url)

    agent.get_by_label("Show desktop notifications").check()

    expect(agent.get_by_role("status")).to_contain_text("blocked")
    expect(agent.get_by_label("Show desktop notifications")).not_to_be_checked()
    assert agent.evaluate("JSON.parse(localStorage.getItem('crm-chat:alerts')).desktop") is False


def test_a_search_hit_opens_the_conversation_at_the_matched_message(
    crm,  # noqa: F811
    browser: Browser,
    contexts: list[BrowserContext],
) -> None:
    """The sidebar search and the inbox search both link to the message that matched;
    the conversation page shows that message, not the newest, and marks it."""
    from crm.chat.services import chat_service

    agent = _new_page(browser, contexts, websockets=True)
    _log_in_to_inbox(agent, f"http://localhost:{crm.port}")
    widget = chat_service.create_widget(name="Site")
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
    conv = chat_service.open_conversation(visitor=visitor)
    for i in range(60):
        body = "My <b>parcel</b> never came" if i == 3 else f"filler line {i}"
        chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=body)

    search = agent.get_by_role("searchbox", name="Search everything")
    search.fill("parcels")
    search.press("Enter")
    agent.wait_for_url("**/crm/search/?q=parcels")
    hit = agent.locator(".search-hits li").filter(has_text="C1001")
    expect(hit.locator("mark")).to_have_text("parcel")
    expect(hit).to_contain_text("parcel</b> never came")  # typed markup stays text
    hit.get_by_role("link", name=re.compile("^C1001")).click()

    agent.wait_for_url(re.compile(r".*/crm/chat/[0-9a-f-]+/#m4$"))
    target = agent.locator("#m4")
    expect(target).to_contain_text("never came")
    expect(target).to_be_in_viewport()
    expect(agent.locator("#transcript .bubble").last).not_to_be_in_viewport()
    assert agent.evaluate("getComputedStyle(document.getElementById('m4')).outlineStyle") == "solid"

    agent.goto(f"http://localhost:{crm.port}/crm/chat/?q=parcel")
    agent.locator("a.search-hit").click()
    agent.wait_for_url(re.compile(r".*#m4$"))
    expect(agent.locator("#m4")).to_be_in_viewport()
