"""postMessage between the loader and the widget's iframe only, in real Chromium.

The loader (on the host page) obeys ``size`` (open/close the frame) and ``token``
(keep the visitor token in the host's storage) only from the widget's own iframe on
the CRM's origin; the widget obeys ``page`` (record a page view) and ``ph`` (phone
layout) only from its parent window on an allowed origin. Here other windows send
exactly those messages, with ``"*"`` as target so the browser delivers them:

* a frame of another site inside the host page (it can reach ``parent`` and every
  frame of it),
* a frame of the host's own origin inside the host page (the right origin for the
  widget, but not its parent; the wrong origin for the loader),
* a page of another site that opened the host page, or the widget itself, in a popup.

Each forged message must have no effect, and the same message from the legitimate
sender must have one (so every check here can fail).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, Frame, Page

from crm.chat.models import ChatVisitor, ChatVisitorPageView, ChatWidget, hash_token
from crm.chat.services import chat_service
from tests.security.conftest import Website, crm_origin, host_page, wait_for

pytestmark = pytest.mark.browser

FORGED_TOKEN = "forged-token-" + "x" * 51
# Posts forged messages to ``target`` (the host window) and to every frame of it but
# the sender itself (the widget's iframe among them), then tells the host it is done.
ATTACKER_JS = """
<script>
window.attack = function (target, toLoader, toWidget, tag) {
  toLoader.forEach(function (m) { target.postMessage(m, "*"); });
  for (var i = 0; i < target.frames.length; i++) {
    if (target.frames[i] === window) continue;
    toWidget.forEach(function (m) { target.frames[i].postMessage(m, "*"); });
  }
  target.postMessage({ attackDone: tag }, "*");
};
window.openAndAttack = function (url) { window.victim = window.open(url, "victim"); };
</script>
"""
# On the host page: notes when an attacker says it is done (the loader ignores this).
HOST_LISTENER = (
    "<script>window.__done = [];"
    "addEventListener('message', function (e) {"
    " if (e.data && e.data.attackDone) window.__done.push(e.data.attackDone); });</script>"
)


def _key(widget: ChatWidget) -> str:
    return f"crmchat:{widget.public_key}"


def _frame_box(page: Page) -> dict[str, float]:
    return page.evaluate(
        "() => { const r = document.querySelector('iframe[title=Chat]').getBoundingClientRect();"
        " return {w: r.width, h: r.height}; }"
    )


def _widget_frame(page: Page, widget: ChatWidget) -> Frame:
    frame = wait_for(
        lambda: page.frame(url=lambda u: u.rstrip("/").endswith(f"/p/chat/{widget.public_key}")),
        what="the widget's iframe",
    )
    frame.wait_for_selector('html[data-ready="1"]', state="attached")
    return frame


def _host_token(page: Page, widget: ChatWidget) -> str | None:
    return page.evaluate("k => localStorage.getItem(k)", _key(widget))


def _page_views(url: str) -> Callable[[], bool]:
    return lambda: ChatVisitorPageView.objects.filter(url=url).exists()


def _settle(page: Page, tag: str) -> None:
    """Wait until the host heard the attacker's closing message, then a little more."""
    page.wait_for_function("t => window.__done.includes(t)", arg=tag)
    page.wait_for_timeout(400)  # any handler that would act has run and called the API


def _attack(frame: Frame, target: str, to_loader: list, to_widget: list, tag: str) -> None:
    frame.evaluate(f"([l, w, t]) => attack({target}, l, w, t)", [to_loader, to_widget, tag])


@pytest.fixture
def scene(crm, websites: Callable[..., Website]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    host = websites("127.0.0.1")
    foreign = websites("localhost")  # another site than the host (and another origin than the CRM)
    widget = chat_service.create_widget(name="Shop", allowed_origins=[host.origin])
    host.pages["/"] = host_page(
        widget.embed_snippet(),
        body=(
            HOST_LISTENER
            + f'<iframe id="foreign" title="Ad" src="{foreign.url("/frame")}"></iframe>'
            + f'<iframe id="sibling" title="Own" src="{host.url("/sibling")}"></iframe>'
        ),
    )
    host.pages["/sibling"] = "<!doctype html><title>sibling</title>" + ATTACKER_JS
    foreign.pages["/frame"] = "<!doctype html><title>ad</title>" + ATTACKER_JS
    foreign.pages["/opener"] = "<!doctype html><title>opener</title>" + ATTACKER_JS
    return {"host": host, "foreign": foreign, "widget": widget}


def _open_host(browser: Browser, scene: dict[str, Any]) -> tuple[Any, Page, Frame]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(scene["host"].url("/"))
    widget_frame = _widget_frame(page, scene["widget"])
    # The widget mirrors the visitor token into the host's storage once identified.
    wait_for(lambda: _host_token(page, scene["widget"]), what="the token mirrored to the host")
    return context, page, widget_frame


class LoaderIgnoresForgedMessagesTests:
    def test_frames_inside_the_host_page_cannot_resize_open_or_store(
        self, crm, scene, browser: Browser
    ) -> None:
        widget = scene["widget"]
        context, page, widget_frame = _open_host(browser, scene)
        token = _host_token(page, widget)
        visitor = ChatVisitor.objects.get(widget=widget)
        assert visitor.visitor_token == hash_token(token)  # the real token, from the CRM
        closed = _frame_box(page)
        assert closed == {"w": 96, "h": 96}

        forged = [{"t": "size", "open": 1}, {"t": "token", "v": FORGED_TOKEN}]
        for frame_id in ("foreign", "sibling"):
            sender = _child(page, frame_id)
            _attack(sender, "parent", forged, [], f"{frame_id}-open")
            _settle(page, f"{frame_id}-open")
            assert _frame_box(page) == closed, f"{frame_id} opened the widget"
            assert _host_token(page, widget) == token, f"{frame_id} replaced the token"
            _attack(sender, "parent", [{"t": "token", "v": ""}], [], f"{frame_id}-clear")
            _settle(page, f"{frame_id}-clear")
            assert _host_token(page, widget) == token, f"{frame_id} cleared the token"

        # The widget itself: its launcher opens the frame through the same message.
        widget_frame.get_by_role("button", name="Chat with us").click()
        wait_for(lambda: _frame_box(page)["w"] == 420, what="the frame opened by the widget")
        opened = _frame_box(page)
        for frame_id in ("foreign", "sibling"):
            sender = _child(page, frame_id)
            _attack(sender, "parent", [{"t": "size", "open": 0}], [], f"{frame_id}-close")
            _settle(page, f"{frame_id}-close")
            assert _frame_box(page) == opened, f"{frame_id} closed the widget"
        widget_frame.get_by_role("button", name="Minimise chat").first.click()
        wait_for(lambda: _frame_box(page) == closed, what="the frame closed by the widget")
        context.close()

    def test_a_page_that_opened_the_host_in_a_popup_cannot_drive_the_loader(
        self, crm, scene, browser: Browser
    ) -> None:
        widget, host, foreign = scene["widget"], scene["host"], scene["foreign"]
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        opener = context.new_page()
        opener.set_default_timeout(15_000)
        opener.goto(foreign.url("/opener"))
        with context.expect_page() as popup_info:
            opener.evaluate("u => openAndAttack(u)", host.url("/"))
        popup = popup_info.value
        popup.set_default_timeout(15_000)
        popup.wait_for_load_state()
        _widget_frame(popup, widget)
        wait_for(lambda: _host_token(popup, widget), what="the token mirrored to the host")
        token = _host_token(popup, widget)

        fake = host.url("/from-the-opener")
        _attack(
            opener.main_frame,
            "window.victim",
            [{"t": "size", "open": 1}, {"t": "token", "v": FORGED_TOKEN}],
            [{"t": "page", "url": fake, "title": "Forged"}, {"ph": True}],
            "opener",
        )
        _settle(popup, "opener")
        assert _frame_box(popup) == {"w": 96, "h": 96}
        assert _host_token(popup, widget) == token
        widget_frame = _widget_frame(popup, widget)
        assert not widget_frame.evaluate("document.documentElement.classList.contains('phone')")
        # The host page itself reports a page: recorded; the opener's never is.
        popup.evaluate("history.pushState({}, '', '/real-page')")
        wait_for(_page_views(host.url("/real-page")), what="the host's own page view")
        popup.wait_for_timeout(300)
        assert not _page_views(fake)()
        context.close()


def _child(page: Page, frame_id: str) -> Frame:
    handle = page.locator(f"iframe#{frame_id}").element_handle()
    assert handle is not None
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_function("() => typeof window.attack === 'function'")
    return frame


class WidgetIgnoresForgedMessagesTests:
    def test_frames_beside_the_widget_cannot_record_pages_or_change_its_layout(
        self, crm, scene, browser: Browser
    ) -> None:
        host = scene["host"]
        context, page, widget_frame = _open_host(browser, scene)
        wait_for(_page_views(host.url("/")), what="the first page view")
        # A function, not an expression: Playwright would eval() an expression in the
        # page, which the widget's CSP (rightly) forbids.
        is_phone = "() => document.documentElement.classList.contains('phone')"
        assert not widget_frame.evaluate(is_phone)

        for frame_id in ("foreign", "sibling"):
            fake = host.url(f"/forged-by-{frame_id}")
            forged = [
                {"t": "page", "url": fake, "title": "Forged", "ref": ""},
                {"t": "mode", "ph": True},
            ]
            _attack(_child(page, frame_id), "parent", [], forged, frame_id)
            _settle(page, frame_id)
            assert not widget_frame.evaluate(is_phone), f"{frame_id} switched the layout"

        # The real parent: a single-page-app navigation and a phone-sized window.
        page.evaluate("history.pushState({}, '', '/pricing')")
        wait_for(_page_views(host.url("/pricing")), what="the host's own page view")
        page.set_viewport_size({"width": 400, "height": 800})
        widget_frame.wait_for_function(is_phone)
        page.wait_for_timeout(300)
        trail = set(ChatVisitorPageView.objects.values_list("url", flat=True))
        assert trail == {host.url("/"), host.url("/pricing")}, trail
        context.close()

    def test_a_page_that_opened_the_widget_itself_cannot_feed_it(
        self, crm, scene, browser: Browser
    ) -> None:
        widget, host, foreign = scene["widget"], scene["host"], scene["foreign"]
        context = browser.new_context()
        opener = context.new_page()
        opener.set_default_timeout(15_000)
        opener.goto(foreign.url("/opener"))
        with context.expect_page() as popup_info:
            opener.evaluate(
                "u => openAndAttack(u)", f"{crm_origin(crm)}/p/chat/{widget.public_key}"
            )
        popup = popup_info.value
        popup.set_default_timeout(15_000)
        popup.wait_for_selector('html[data-ready="1"]', state="attached")
        # The widget page sends Cross-Origin-Opener-Policy: same-origin, so the opener's
        # handle to it is severed at once; the widget would also ignore any message
        # while it isn't framed.
        assert popup.evaluate("window.opener === null")
        assert opener.evaluate("window.victim.closed")
        fake = host.url("/forged-by-opener")
        message = {"t": "page", "url": fake, "title": "Forged", "tok": FORGED_TOKEN}
        opener.evaluate("m => window.victim.postMessage(m, '*')", message)
        popup.wait_for_timeout(600)
        assert not _page_views(fake)()
        # The widget kept its own identity (the forged token was not adopted).
        stored = popup.evaluate("k => localStorage.getItem(k)", _key(widget))
        assert stored and stored != FORGED_TOKEN
        assert ChatVisitor.objects.filter(visitor_token=hash_token(stored)).exists()
        context.close()
