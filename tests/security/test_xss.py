"""Stored and reflected XSS: the payload corpus through every input, rendered in Chromium.

Visitors' names, emails, messages, page titles and page URLs go in through the
public API, agents' replies and notes through the inbox and CRM views, exactly as
the widget and the agents send them. Then Debian's Chromium opens every place that
shows them: the widget (alone and on a host page of another site), the inbox list,
each conversation with its visitor sidebar and page trail, the lead and person
pages after convert/promote, and the Django admin. A payload that runs (a dialog,
or ``window.__xss`` in any frame) or becomes markup (``MARKUP_PROBE``) fails the
test, as does one that is shown as anything other than its own text.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.test import Client
from django.urls import reverse

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatWidget
from crm.chat.services import chat_service
from crm.core.models import Lead, Person
from crm.core.services import create_agent
from tests.security.conftest import (
    NO_RATE_LIMITS,
    Website,
    crm_origin,
    host_page,
    in_thread,
    log_in,
    wait_for,
)
from tests.security.xss_payloads import JAVASCRIPT_URLS, MARKUP_PROBE, PAYLOADS, live_as_html

pytestmark = pytest.mark.browser

TOKEN_HEADER = "X-Chat-Visitor-Token"
SHOP = "https://shop.example"
AGENT_FIRST, AGENT_LAST = "<svg onload=window.__xss=1 id=xss>", "<img src=x onerror=alert(1)>"
WIDGET_NAME = "<img src=x onerror=window.__xss=1 id=xss> {{7*7}}"
WIDGET_WELCOME = "</script><script>window.__xss=1</script>${7*7}"
HOST_TITLE = "<img src=x onerror=window.__xss=1 id=xss> {{7*7}} \u202eeltit"
PROBE_JS = """sel => ({
  xss: window.__xss === undefined ? null : String(window.__xss),
  hits: [...document.querySelectorAll(sel)].map(e => e.outerHTML.slice(0, 160)),
})"""


def _max_body() -> int:
    from crm.chat.models import max_body_length

    return max_body_length()


def _body_ok(text: str) -> bool:
    clean = text.strip()
    return 0 < len(clean) <= _max_body() and "\x00" not in clean


def _name_ok(text: str) -> bool:
    clean = text.strip()
    return 0 < len(clean) <= 255 and not any(ord(c) < 32 for c in clean) and "\x00" not in text


def _email_ok(text: str) -> bool:
    clean = text.strip().lower()
    if not clean or len(clean) > 254 or "\x00" in text:
        return False
    try:
        validate_email(clean)
    except ValidationError:
        return False
    return True


@dataclass
class Seeded:
    owner: Any
    widget: ChatWidget
    carrier: ChatConversation
    carrier_token: str
    carrier_lead: Lead
    carrier_person: Person
    conversations: list[ChatConversation]
    bodies: list[str]  # every accepted message body, stripped
    names: int = 0
    emails: int = 0
    refused: dict[str, int] = field(default_factory=dict)


class Api:
    """The public API as the widget calls it (in-process; the data is committed)."""

    def __init__(self, widget: ChatWidget) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.base = f"/p/chat/{widget.public_key}/api"

    def call(self, method: str, path: str, body: Any, token: str | None = None) -> Any:
        headers = {TOKEN_HEADER: token} if token else {}
        return self.client.generic(
            method, self.base + path, json.dumps(body), "application/json", headers=headers
        )

    def new_visitor(self) -> str:
        response = self.call("POST", "/visitor", {})
        assert response.status_code == 201, response.content
        return response.json()["visitor_token"]


def seed(host_origin: str) -> Seeded:
    """Every payload through every input that takes text; returns what was stored."""
    owner = create_agent(
        username="olivia", password="x", role="Owner", validate=False,
        first_name=AGENT_FIRST, last_name=AGENT_LAST,
    )  # fmt: skip
    widget = chat_service.create_widget(
        name=WIDGET_NAME, welcome_message=WIDGET_WELCOME, allowed_origins=[host_origin, SHOP]
    )
    api, agent = Api(widget), Client()
    agent.force_login(owner)
    refused = {"name": 0, "email": 0, "body": 0, "url": 0, "page": 0}
    names = emails = 0
    bodies: list[str] = []
    conversations: list[ChatConversation] = []
    carrier_token = api.new_visitor()
    carrier_conv = api.call("POST", "/conversations", {}, carrier_token).json()["conversation"]

    for i, payload in enumerate(PAYLOADS):
        token = api.new_visitor()
        status = api.call("PATCH", "/visitor", {"name": payload}, token).status_code
        assert status == (200 if _name_ok(payload) else 422), (payload, status)
        names += status == 200
        refused["name"] += status == 422
        status = api.call("PATCH", "/visitor", {"email": payload}, token).status_code
        assert status == (200 if _email_ok(payload) else 422), (payload, status)
        emails += status == 200
        refused["email"] += status == 422
        conv = api.call("POST", "/conversations", {}, token).json()["conversation"]
        conversations.append(ChatConversation.objects.get(external_id=conv["id"]))
        expected = 201 if _body_ok(payload) else 422
        for who, conv_id in (("visitor", conv["id"]), ("carrier", carrier_conv["id"])):
            use = token if who == "visitor" else carrier_token
            status = api.call(
                "POST", f"/conversations/{conv_id}/messages", {"body": payload}, use
            ).status_code
            assert status == expected, (payload, status)
            status = agent.post(
                reverse("crm-chat-send", args=[conv_id]),
                json.dumps({"body": payload}),
                content_type="application/json",
            ).status_code
            assert status == (201 if expected == 201 else 422), (payload, status)
        if expected == 201:
            bodies.append(payload.strip())
        else:
            refused["body"] += 1
        # A payload is never a page URL: only http(s) URLs are stored (no javascript:).
        status = api.call("POST", "/page-views", {"url": payload}, token).status_code
        assert status == 422, (payload, status)
        refused["url"] += 1
        # Inside an http(s) URL, and as the page title, it is stored as it came.
        page = {"url": f"{SHOP}/p/{i}?q={payload}", "title": payload}
        status = api.call("POST", "/page-views", page, token).status_code
        assert status in (200, 422), (payload, status)
        refused["page"] += status == 422
        if status == 422:  # control characters, or longer than a URL may be
            assert any(c in page["url"] for c in "\r\n\t\x00") or len(payload) > 2000, payload

    for url in JAVASCRIPT_URLS:
        assert api.call("POST", "/page-views", {"url": url}, carrier_token).status_code == 422

    carrier = ChatConversation.objects.get(external_id=carrier_conv["id"])
    # Convert and promote through the inbox, as an agent does; then notes on the person.
    for conv in [carrier, *conversations]:
        agent.post(reverse("crm-chat-action", args=[conv.external_id, "convert"]))
    carrier_visitor = ChatVisitor.objects.get(pk=carrier.visitor_id)
    chat_service.update_visitor_details(visitor=carrier_visitor, name="Carrier Visitor")
    agent.post(reverse("crm-chat-action", args=[carrier.external_id, "promote"]))
    carrier.refresh_from_db()
    person = Person.objects.get(chat_visitors=carrier.visitor_id)
    for payload in PAYLOADS:
        agent.post(
            reverse("crm-person-note-create", args=[person.external_id]), {"content": payload}
        )
    assert carrier.lead is not None
    return Seeded(
        owner, widget, carrier, carrier_token, carrier.lead, person, conversations, bodies,
        names, emails, refused,
    )  # fmt: skip


class Probe:
    """Watches one page: dialogs from any frame, ``window.__xss``, payload-made markup."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.findings: list[str] = []
        self.checked = 0
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.findings.append(f"{self.page.url}: a {dialog.type} opened: {dialog.message!r}")
        dialog.dismiss()

    def goto(self, url: str) -> None:
        response = self.page.goto(url)
        assert response is not None and response.status == 200, (url, response and response.status)
        self.check()

    def check(self) -> None:
        self.page.wait_for_timeout(60)  # async handlers (ontoggle, autofocus) get their turn
        for frame in self.page.frames:
            result = frame.evaluate(PROBE_JS, MARKUP_PROBE)
            where = frame.url[:120]
            if result["xss"] is not None:
                self.findings.append(f"{where}: window.__xss = {result['xss']}")
            for hit in result["hits"]:
                self.findings.append(f"{where}: payload markup {hit}")
        self.checked += 1

    def text_shows(self, selector: str, texts: list[str], frame: Any = None) -> None:
        """Each text is shown verbatim inside ``selector``: escaped, not interpreted."""
        shown = (
            (frame or self.page)
            .locator(selector)
            .evaluate_all("els => els.map(e => e.textContent).join('\\n')")
        )
        for text in texts:
            if text not in shown:
                self.findings.append(f"{self.page.url}: {selector} lacks {text[:60]!r}")


@pytest.fixture
def corpus(crm, settings, websites) -> Iterator[tuple[Seeded, Website]]:  # type: ignore[no-untyped-def]
    settings.CRM_CHAT_RATE_LIMITS = NO_RATE_LIMITS
    site = websites()
    yield in_thread(seed, site.origin), site


class XssTests:
    def test_no_payload_runs_or_becomes_markup_anywhere(  # type: ignore[no-untyped-def]
        self, crm, corpus, browser
    ) -> None:
        seeded, site = corpus
        origin = crm_origin(crm)
        key = seeded.widget.public_key
        carrier_texts = list(dict.fromkeys(seeded.bodies))
        assert len(PAYLOADS) >= 100 and len(carrier_texts) >= 100
        assert seeded.names >= 100 and seeded.emails >= 5
        messages = ChatMessage.objects.filter(conversation=seeded.carrier, is_internal=False)
        shown = messages.count()
        findings: list[str] = []
        pages = 0

        # --- the widget, opened directly, then on a host page of another site
        context = browser.new_context()
        context.add_init_script(
            f"try {{ localStorage.setItem('crmchat:{key}', {json.dumps(seeded.carrier_token)}) }}"
            " catch (e) {}"
        )
        page = context.new_page()
        probe = Probe(page)
        probe.goto(f"{origin}/p/chat/{key}")
        page.wait_for_function(
            "n => document.querySelectorAll('#log .msg[data-seq]').length >= n", arg=shown
        )
        probe.check()
        probe.text_shows("#log", carrier_texts)
        probe.text_shows("#title", [WIDGET_NAME])
        probe.text_shows("#welcome", [WIDGET_WELCOME])
        probe.text_shows("#log .who-n", [f"{AGENT_FIRST} {AGENT_LAST}"])

        site.pages["/"] = host_page(seeded.widget.embed_snippet(), title=html.escape(HOST_TITLE))
        probe.goto(site.url("/"))
        frame = wait_for(lambda: page.frame(url=lambda u: f"/p/chat/{key}" in u), what="iframe")
        frame.wait_for_selector('html[data-ready="1"]', state="attached")
        frame.get_by_role("button", name="Chat with us").click()
        frame.wait_for_function(
            "n => document.querySelectorAll('#log .msg[data-seq]').length >= n", arg=shown
        )
        probe.check()
        probe.text_shows("#log", carrier_texts, frame=frame)
        # The host page's title arrives through the loader as a page view.
        wait_for(
            lambda: seeded.carrier.visitor.page_views.filter(
                title=" ".join(HOST_TITLE.split())
            ).exists(),
            what="the host page's title recorded",
        )
        findings += probe.findings
        pages += probe.checked
        context.close()

        # --- the agent's side: inbox, every conversation, leads, people, admin
        context = browser.new_context()
        log_in(context, crm, seeded.owner)
        page = context.new_page()
        probe = Probe(page)
        total = ChatConversation.objects.count()
        for number in range(1, math.ceil(total / 25) + 1):
            probe.goto(f"{origin}/crm/chat/?status=all&page={number}")
        for payload in [PAYLOADS[i] for i in range(0, len(PAYLOADS), 9)]:
            probe.goto(f"{origin}/crm/chat/?" + urlencode({"status": "all", "q": payload[:200]}))
        probe.goto(f"{origin}{seeded.carrier.get_absolute_url()}")
        probe.text_shows("#transcript .text", carrier_texts)
        for conv in seeded.conversations:
            probe.goto(f"{origin}{conv.get_absolute_url()}")
        probe.goto(f"{origin}{seeded.carrier_lead.get_absolute_url()}")
        probe.text_shows(".note-body", carrier_texts)
        probe.goto(f"{origin}{seeded.carrier_person.get_absolute_url()}")
        probe.text_shows(".note-body", [p.strip() for p in PAYLOADS if p.strip()][:50])
        for number in range(1, math.ceil(Lead.objects.count() / 25) + 1):
            probe.goto(f"{origin}/crm/leads/?page={number}")
        for number in range(1, math.ceil(Person.objects.count() / 25) + 1):
            probe.goto(f"{origin}/crm/people/?page={number}")
        for model in ("chatconversation", "chatvisitor", "chatvisitorpageview", "chatwidget"):
            probe.goto(f"{origin}/admin/crm_chat/{model}/")
        for model, rows in (("chatmessage", ChatMessage), ("chatvisitor", ChatVisitor)):
            for number in range(math.ceil(rows.objects.count() / 100)):
                probe.goto(f"{origin}/admin/crm_chat/{model}/?p={number + 1}")
        for model in ("note", "lead", "person"):
            probe.goto(f"{origin}/admin/crm_core/{model}/")
        probe.goto(f"{origin}/admin/crm_chat/chatconversation/{seeded.carrier.pk}/change/")
        probe.goto(f"{origin}/admin/crm_chat/chatvisitor/{seeded.carrier.visitor_id}/change/")
        probe.goto(f"{origin}/admin/crm_chat/chatwidget/{seeded.widget.pk}/change/")
        probe.goto(f"{origin}/admin/crm_core/lead/{seeded.carrier_lead.pk}/change/")
        probe.goto(f"{origin}/admin/crm_core/person/{seeded.carrier_person.pk}/change/")
        view = seeded.carrier.visitor.page_views.order_by("-pk").first()
        probe.goto(f"{origin}/admin/crm_chat/chatvisitorpageview/{view.pk}/change/")
        findings += probe.findings
        pages += probe.checked
        context.close()

        assert pages > 200
        assert not findings, f"{len(findings)} findings:\n" + "\n".join(findings[:40])

    def test_the_probe_sees_every_live_payload_parsed_as_html(self, page) -> None:  # type: ignore[no-untyped-def]
        """Guards the oracle: parsed as markup, each live payload runs or is found."""
        probe = Probe(page)
        page.set_content("<!doctype html><title>probe</title><body><div id=root></div></body>")
        missed = []
        for payload in live_as_html():
            before = len(probe.findings)
            page.evaluate(
                "p => { delete window.__xss; document.getElementById('root').innerHTML = p }",
                payload,
            )
            probe.check()
            if len(probe.findings) == before:
                missed.append(payload)
            page.evaluate("() => { document.getElementById('root').innerHTML = '' }")
        assert len(live_as_html()) >= 90
        assert not missed, missed

    def test_live_messages_and_typing_render_as_text(  # type: ignore[no-untyped-def]
        self, crm, browser, settings
    ) -> None:
        """Messages and typing that arrive over the sockets are drawn by JavaScript."""
        owner = create_agent(
            username="olivia", password="x", role="Owner", validate=False,
            first_name=AGENT_FIRST, last_name=AGENT_LAST,
        )  # fmt: skip
        widget = chat_service.create_widget(name=WIDGET_NAME)
        visitor, token = chat_service.identify_visitor(widget=widget, token=None)
        chat_service.update_visitor_details(visitor=visitor, name=PAYLOADS[0][:255])
        conv = chat_service.open_conversation(visitor=visitor)
        origin = crm_origin(crm)
        bodies = list(dict.fromkeys(p.strip() for p in PAYLOADS if _body_ok(p)))

        agent_context = browser.new_context()
        log_in(agent_context, crm, owner)
        agent_page = agent_context.new_page()
        agent_probe = Probe(agent_page)
        agent_probe.goto(f"{origin}{conv.get_absolute_url()}")
        visitor_context = browser.new_context()
        visitor_context.add_init_script(
            f"localStorage.setItem('crmchat:{widget.public_key}', {json.dumps(token)})"
        )
        visitor_page = visitor_context.new_page()
        visitor_probe = Probe(visitor_page)
        visitor_probe.goto(f"{origin}/p/chat/{widget.public_key}")
        for page in (agent_page, visitor_page):
            page.wait_for_function("() => document.documentElement.dataset.transport === 'ws'")

        for body in bodies:
            crm.call(
                chat_service.send_visitor_message, conversation=conv, visitor=visitor, body=body
            )
            crm.call(chat_service.send_agent_message, conversation=conv, agent=owner, body=body)
        last = ChatConversation.objects.get(pk=conv.pk).last_seq
        shown = ChatMessage.objects.filter(conversation=conv, is_internal=False).count()
        agent_page.wait_for_function(
            "n => document.querySelectorAll('#transcript [data-seq]').length >= n", arg=last
        )
        visitor_page.wait_for_function(
            "n => document.querySelectorAll('#log .msg[data-seq]').length >= n", arg=shown
        )
        # Each side types; the other side shows the typist's name (a payload too).
        visitor_page.locator("#body").fill("typing")
        agent_page.wait_for_function("() => document.getElementById('typing').textContent !== ''")
        agent_page.locator("#reply-body").fill("typing")
        visitor_page.wait_for_function("() => document.getElementById('typing').textContent !== ''")

        for probe in (agent_probe, visitor_probe):
            probe.check()
        agent_probe.text_shows("#transcript .text", bodies)
        agent_probe.text_shows("#typing", [PAYLOADS[0][:255].strip()])
        visitor_probe.text_shows("#log", bodies)
        visitor_probe.text_shows("#typing", [f"{AGENT_FIRST} {AGENT_LAST}"])
        findings = agent_probe.findings + visitor_probe.findings
        agent_context.close()
        visitor_context.close()
        assert not findings, f"{len(findings)} findings:\n" + "\n".join(findings[:40])
