"""Settings → Chat Widgets in a real browser: create, live preview, copy the snippet."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from crm.chat.models import ChatWidget
from crm.core.roles import OWNER
from crm.core.services import create_agent

PASSWORD = "browser-test-pass-1"


@pytest.mark.browser
def test_it_creates_a_widget_previews_it_and_copies_the_snippet(asgi_server, page) -> None:  # type: ignore[no-untyped-def]
    create_agent(username="olivia", password=PASSWORD, role=OWNER, validate=False)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "favicon" not in msg.location.get("url", "")
            else None
        ),
    )

    page.goto(asgi_server.url + "/login/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/crm/")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Chat Widgets").click()
    page.wait_for_url("**/crm/chat-widgets/")
    page.get_by_role("link", name="New widget").click()

    page.get_by_label("Name").fill("Shop")
    page.get_by_label("Welcome message").fill("Hi from the shop!")
    page.get_by_label("Position").select_option(label="Bottom left")
    page.get_by_label("Allowed origins").fill("HTTPS://Shop.Example:443/\nhttp://localhost:3000")
    page.get_by_role("button", name="Create widget").click()

    page.wait_for_url("**/crm/chat-widgets/*/edit/")
    expect(page.get_by_text("Created Shop.")).to_be_visible()
    widget = ChatWidget.objects.get()
    assert widget.allowed_origins == ["https://shop.example", "http://localhost:3000"]
    expect(page.get_by_label("Allowed origins")).to_have_value(
        "https://shop.example\nhttp://localhost:3000"
    )

    # The preview follows the picker, the text box and the position select.
    preview = page.locator("[data-widget-preview]")
    launcher = page.locator("[data-preview-launcher]")
    expect(launcher).to_have_css("background-color", "rgb(37, 99, 235)")
    expect(preview).to_have_class("widget-preview is-left")
    page.get_by_label("Pick the launcher colour").fill("#dc2626")
    expect(launcher).to_have_css("background-color", "rgb(220, 38, 38)")
    expect(page.get_by_label("Colour", exact=True)).to_have_value("#dc2626")
    page.get_by_label("Colour", exact=True).fill("16A34A")
    expect(launcher).to_have_css("background-color", "rgb(22, 163, 74)")
    page.get_by_label("Position").select_option(label="Bottom right")
    expect(preview).to_have_class("widget-preview")

    # Copy the embed snippet and see the confirmation.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("[data-copy-status]")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f"/p/chat/{widget.public_key}.js" in copied

    page.get_by_role("button", name="Save widget").click()
    expect(page.get_by_text("Saved Shop.")).to_be_visible()
    widget.refresh_from_db()
    assert (widget.color, widget.position) == ("#16a34a", "bottom-right")
    assert errors == []
