"""The Content-Security-Policy of the agent's pages, enforced by real Chromium.

Every CRM page and the Django admin are opened and used (live socket, htmx search, a
reply, the widget preview, admin forms and lists) while every
``securitypolicyviolation`` event of every frame and every console error is
collected: the strict policy must not break anything, and nothing may be refused.
A control injects an inline script and an inline style into a page to show the
policy is really enforced and the collector really hears it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from playwright.sync_api import Browser, BrowserContext, Page, expect

from crm.chat.models import ChatConversation, ChatMessage, ChatWidget
from crm.chat.services import chat_service
from crm.core.models import Lead, Organisation, Person
from crm.core.services import create_agent
from tests.security.conftest import crm_origin, in_thread, log_in

pytestmark = pytest.mark.browser

COLLECT = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolation(JSON.stringify({
    page: location.href, directive: e.violatedDirective, blocked: e.blockedURI,
    sample: e.sample, source: e.sourceFile, line: e.lineNumber,
  }));
}, true);
"""


@dataclass
class Seeded:
    owner: AbstractUser
    widget: ChatWidget
    conversation: ChatConversation
    person: Person
    organisation: Organisation
    lead: Lead


def _seed() -> Seeded:
    owner = create_agent(
        username="olivia", password="x", role="Owner", first_name="Olivia", validate=False
    )
    widget = chat_service.create_widget(
        name="Shop", allowed_origins=["https://shop.example"], offline_message=""
    )
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None, ip_address="8.8.8.8")
    chat_service.update_visitor_details(visitor=visitor, name="Vera Visitor")
    chat_service.record_page_view(visitor=visitor, url="https://shop.example/cart", title="Cart")
    conv = chat_service.open_conversation(visitor=visitor)
    chat_service.send_visitor_message(conversation=conv, visitor=visitor, body="Hello there")
    organisation = Organisation.objects.create(name="Acme Ltd", website="https://acme.example")
    person = Person.objects.create(
        first_name="Ada", last_name="Lovelace", organisation=organisation
    )
    lead = Lead.objects.create(title="Acme renewal", person=person, organisation=organisation)
    return Seeded(owner, widget, conv, person, organisation, lead)


class Watch:
    """Collects CSP violations (any frame, across navigations) and console errors."""

    def __init__(self, context: BrowserContext) -> None:
        self.violations: list[dict[str, Any]] = []
        self.errors: list[str] = []
        context.expose_function("__cspViolation", lambda v: self.violations.append(json.loads(v)))
        context.add_init_script(COLLECT)

    def page(self, context: BrowserContext) -> Page:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught {exc}"))
        return page

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{message.location.get('url')}: {message.text}")


def _open(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, (url, policy)
    page.wait_for_load_state("load")


def _agent_socket_is_live(page: Page) -> None:
    page.wait_for_function("() => document.documentElement.dataset.agentTransport === 'ws'")


@pytest.fixture
def seeded(crm) -> Seeded:  # type: ignore[no-untyped-def]
    return in_thread(_seed)


class AgentPagesUnderCspTests:
    def test_every_agent_page_and_the_admin_work_without_a_single_violation(
        self, crm, seeded: Seeded, browser: Browser
    ) -> None:
        origin = crm_origin(crm)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        watch = Watch(context)
        page = watch.page(context)
        _open(page, f"{origin}/login/")  # the one page an anonymous agent sees
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        visited = 1
        log_in(context, crm, seeded.owner)

        # Dashboard, people, organisations, leads: lists, details and forms.
        for path in (
            "/crm/",
            "/crm/people/",
            seeded.person.get_absolute_url(),
            "/crm/people/new/",
            f"/crm/people/{seeded.person.external_id}/edit/",
            "/crm/organisations/",
            seeded.organisation.get_absolute_url(),
            "/crm/organisations/new/",
            "/crm/leads/",
            seeded.lead.get_absolute_url(),
            "/crm/leads/new/",
            f"/crm/leads/{seeded.lead.external_id}/edit/",
            "/crm/settings/",
            "/crm/chat-widgets/",
        ):
            _open(page, origin + path)
            _agent_socket_is_live(page)  # connect-src lets the agent socket open
            visited += 1

        # A form really posts (form-action 'self'): a note on the person.
        _open(page, origin + seeded.person.get_absolute_url())
        page.locator("textarea[name=content]").fill("Called about the renewal")
        page.get_by_role("button", name="Add note").click()
        expect(page.locator(".note-body").filter(has_text="Called about")).to_be_visible()

        # Widget settings: the live preview paints through the CSSOM.
        _open(page, f"{origin}/crm/chat-widgets/{seeded.widget.external_id}/edit/")
        page.locator("[data-color-text]").fill("#10b981")
        launcher = page.locator("[data-preview-launcher]")
        expect(launcher).to_have_css("background-color", "rgb(16, 185, 129)")
        visited += 1

        # The inbox: live socket, and the htmx search swaps the list in place.
        _open(page, f"{origin}/crm/chat/")
        _agent_socket_is_live(page)
        page.evaluate("window.__samePage = true")
        page.locator("#inbox-q").fill("Vera")
        page.locator("#inbox-q").press("Enter")
        page.wait_for_url("**/crm/chat/?*q=Vera*")
        expect(page.get_by_role("link", name=seeded.conversation.chat_id)).to_be_visible()
        assert page.evaluate("window.__samePage === true"), "htmx search reloaded the page"
        visited += 1

        # A conversation: the transcript's socket goes live and a reply is delivered.
        _open(page, origin + seeded.conversation.get_absolute_url())
        page.wait_for_function("() => document.documentElement.dataset.transport === 'ws'")
        page.locator("#reply-body").fill("Happy to help")
        page.locator("#reply-body").press("Enter")
        expect(page.locator("#transcript").get_by_text("Happy to help")).to_be_visible()
        in_thread(
            lambda: _wait_for_message(seeded.conversation, "Happy to help"),
        )
        visited += 1

        # The admin: index, lists (editable and read-only), change forms with their
        # widgets, and the add-user form with its script.
        for path in (
            "/admin/",
            "/admin/crm_chat/chatmessage/",
            "/admin/crm_chat/chatconversation/",
            "/admin/crm_chat/chatvisitor/",
            "/admin/crm_chat/chatwidget/",
            f"/admin/crm_chat/chatwidget/{seeded.widget.pk}/change/",
            f"/admin/crm_chat/chatconversation/{seeded.conversation.pk}/change/",
            "/admin/crm_core/person/",
            f"/admin/crm_core/person/{seeded.person.pk}/change/",
            "/admin/crm_core/lead/add/",
            "/admin/auth/user/add/",
            "/admin/auth/group/",
        ):
            _open(page, origin + path)
            visited += 1
        # Admin scripts run: the change list's search and the nav sidebar filter.
        _open(page, f"{origin}/admin/crm_core/person/?q=Ada")
        expect(page.locator("#result_list")).to_contain_text("Lovelace")
        page.locator("#nav-filter").fill("lead")
        expect(page.locator("#nav-sidebar tr.model-chatmessage")).to_be_hidden()
        page.wait_for_timeout(300)  # late violations (async scripts) get reported

        context.close()
        assert visited == 30
        assert not watch.violations, json.dumps(watch.violations, indent=1)[:4000]
        errors = [e for e in watch.errors if "favicon.ico" not in e]
        assert not errors, "\n".join(errors)

    def test_the_policy_is_enforced_and_heard(self, crm, seeded: Seeded, browser: Browser) -> None:
        """Control: an injected inline script and inline style are refused and reported."""
        context = browser.new_context()
        watch = Watch(context)
        log_in(context, crm, seeded.owner)
        page = watch.page(context)
        _open(page, crm_origin(crm) + "/crm/")
        page.evaluate(
            """() => {
              const s = document.createElement("script");
              s.textContent = "window.__ran = true";
              document.body.append(s);
              const st = document.createElement("style");
              st.textContent = "body { background: rgb(1, 2, 3) }";
              document.head.append(st);
              const w = new WebSocket("ws://127.0.0.1:9/elsewhere");
            }"""
        )
        page.wait_for_timeout(300)
        assert page.evaluate("window.__ran === undefined"), "an inline script ran"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(1, 2, 3)"
        directives = {v["directive"] for v in watch.violations}
        assert {"script-src-elem", "style-src-elem", "connect-src"} <= directives, directives
        context.close()


def _wait_for_message(conv: ChatConversation, body: str) -> None:
    from tests.security.conftest import wait_for

    wait_for(
        lambda: ChatMessage.objects.filter(conversation=conv, body=body).exists(),
        what="the reply stored",
    )
