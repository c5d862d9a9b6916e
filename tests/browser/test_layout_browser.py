"""Layout details measured in Chromium: nothing an agent needs to read is cut off."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from crm.chat.models import ChatConversation
from crm.chat.services import chat_service
from crm.core.roles import OWNER
from crm.core.services import create_agent

pytestmark = pytest.mark.browser

PASSWORD = "layout-browser-pass-1"
# Desktop, small laptop, tablet (the sidebar stacks at 800 px) and phone widths.
WIDTHS = [1440, 1280, 1024, 800, 768, 390]
# No hyphen: the browser finds no break in it by itself.
LONG_EMAIL = "katherine.johnsonsmithers@globalcorporation.example"

# Width of the placeholder text in the input's own font, and the room the input gives it.
PLACEHOLDER_FIT = """(input) => {
  const style = getComputedStyle(input);
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = style.font;
  const text = ctx.measureText(input.placeholder).width;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return {text, room};
}"""

# Where the rendered text of ``el`` starts a new line: the character index of each
# line's first character, found from the boxes of single characters.
LINE_STARTS = """(el) => {
  const text = el.textContent;
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const starts = [];
  let offset = 0, lastTop = null, node;
  while ((node = walker.nextNode())) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (rect && lastTop !== null && rect.top > lastTop + 1) starts.push(offset + i);
      if (rect) lastTop = rect.top;
    }
    offset += node.length;
  }
  return {text, starts, overflows: el.scrollWidth > el.clientWidth + 1};
}"""


def _log_in(page: Page, url: str) -> None:
    create_agent(username="olivia", password=PASSWORD, role=OWNER, validate=False)
    page.goto(url + "/login/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/crm/")


def _conversation_with_email(email: str) -> ChatConversation:
    widget = chat_service.create_widget(name="Shop chat", offline_message="")
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
    chat_service.update_visitor_details(visitor=visitor, name="Katherine", email=email)
    conv = chat_service.open_conversation(visitor=visitor)
    chat_service.send_visitor_message(conversation=conv, visitor=visitor, body="Hello")
    return conv


def test_the_inbox_search_placeholder_is_never_cut_off(asgi_server, page: Page) -> None:  # type: ignore[no-untyped-def]
    _log_in(page, asgi_server.url)
    page.goto(asgi_server.url + "/crm/chat/")
    search = page.get_by_role("searchbox", name="Search chats")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        fit = search.evaluate(PLACEHOLDER_FIT)
        assert fit["text"] <= fit["room"], f"at {width} px: {fit}"


def test_a_long_email_wraps_only_between_its_parts(asgi_server, page: Page) -> None:  # type: ignore[no-untyped-def]
    conv = _conversation_with_email(LONG_EMAIL)
    _log_in(page, asgi_server.url)
    page.goto(asgi_server.url + conv.get_absolute_url())
    email = page.get_by_role("complementary", name="Visitor").get_by_text(LONG_EMAIL)
    for width in [1280, 1024, 390]:
        page.set_viewport_size({"width": width, "height": 800})
        lines = email.evaluate(LINE_STARTS)
        assert lines["text"] == LONG_EMAIL  # copied as one address, nothing inserted
        assert not lines["overflows"], f"at {width} px the address overflows its box"
        # Lines may start at the "@" or a dot (or after a hyphen), never inside a word.
        breaks = [LONG_EMAIL[i - 1 : i + 1] for i in lines["starts"]]
        assert all(b[1] in "@." or b[0] == "-" for b in breaks), f"at {width} px: {breaks}"
    page.set_viewport_size({"width": 1280, "height": 800})
    assert email.evaluate(LINE_STARTS)["starts"], "the address should need two lines here"
