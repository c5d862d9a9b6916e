"""A visitor who writes too fast, in Chromium: told to wait, and nothing is lost.

Over the WebSocket and over HTTP alike, a message refused by the abuse limit is shown
as not sent (with a Retry button) under a banner saying how long to wait, and goes out
by itself when the wait it was given is over (or at once with Retry).
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from playwright.sync_api import Browser, expect

from crm.chat.models import ChatMessage
from crm.chat.services import chat_service
from tests.chat.api.conftest import rate_limits
from tests.security.conftest import host_page, wait_for

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("transport", "then"), [("ws", "wait"), ("poll", "wait"), ("ws", "retry button")]
)
def test_a_message_over_the_limit_waits_visibly_and_is_sent_later(  # type: ignore[no-untyped-def]
    crm, websites, browser: Browser, settings, transport: str, then: str
) -> None:
    settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(2, 3600))
    site = websites("127.0.0.1")
    widget = chat_service.create_widget(
        name="Shop", allowed_origins=[site.origin], offline_message=""
    )
    site.pages["/"] = host_page(widget.embed_snippet())
    context = browser.new_context()
    if transport == "poll":
        context.add_init_script("delete window.WebSocket")
    context.clock.install()  # timers of every frame, fast-forwarded below
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(site.url("/"))
    frame = page.frame_locator("iframe[title=Chat]")
    frame.get_by_role("button", name="Chat with us").click()
    box = frame.get_by_role("textbox", name="Message")
    for text in ("one", "two"):
        box.fill(text)
        box.press("Enter")
        wait_for(lambda t=text: ChatMessage.objects.filter(body=t).exists(), what=text)
    if transport == "ws":
        expect(frame.locator("html")).to_have_attribute("data-transport", "ws")
    box.fill("three")
    box.press("Enter")

    refused = frame.locator(".msg.me").filter(has_text="three")
    expect(refused).to_contain_text("Not sent")
    expect(refused.get_by_role("button", name="Retry")).to_be_visible()
    expect(frame.get_by_role("alert")).to_contain_text("sending messages very quickly")
    assert not ChatMessage.objects.filter(body="three").exists()

    settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(30, 60))
    cache.clear()
    if then == "wait":
        # The widget waits the Retry-After it was given (the rest of the hour here, in
        # the page's clock), then tries again by itself.
        page.clock.fast_forward("01:00:00")
    else:
        refused.get_by_role("button", name="Retry").click()
    wait_for(
        lambda: ChatMessage.objects.filter(body="three").exists(),
        timeout=15,
        what="the refused message sent later",
    )
    expect(refused).not_to_contain_text("Not sent")
    assert ChatMessage.objects.filter(body="three").count() == 1
    context.close()
