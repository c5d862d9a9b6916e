"""The agents' inbox: list, conversation page, JSON fallback endpoints, actions, access."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatWidget
from crm.chat.services import chat_service
from crm.chat.templatetags.chat_tags import flag
from crm.core.models import Lead, Person
from crm.core.roles import EMPLOYEE
from crm.core.services import create_agent
from tests.chat.conftest import ChatWorld

pytestmark = pytest.mark.django_db

INDEX = reverse("crm-chat-index")
UNREAD = reverse("crm-chat-unread")
CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
XSS_NAME = "<img src=x onerror=alert(1)>"


# ------------------------------------------------------------------------ helpers


def client_for(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


def show_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-show", args=[conv.external_id])


def action_url(conv: ChatConversation, name: str) -> str:
    return reverse("crm-chat-action", args=[conv.external_id, name])


def send_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-send", args=[conv.external_id])


def read_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-read", args=[conv.external_id])


def messages_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-messages", args=[conv.external_id])


def flashes(client: Client, response: Any) -> list[str]:
    """The flash messages the page redirected to shows, as "level: text" (consumes them)."""
    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    return [f"{tag}: {text}" for tag, text in re.findall(r'<p class="flash-(\w+)">(.*?)</p>', html)]


def post_json(client: Client, url: str, data: Any) -> Any:
    body = data if isinstance(data, str | bytes) else json.dumps(data)
    return client.post(url, body, content_type="application/json")


def new_chat(
    widget: ChatWidget, *, name: str = "", email: str = "", says: str = "", ua: str = ""
) -> ChatConversation:
    """A fresh visitor on ``widget`` with an open conversation (and a first message)."""
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None, user_agent=ua)
    if name or email:
        chat_service.update_visitor_details(visitor=visitor, name=name, email=email)
    conv = chat_service.open_conversation(visitor=visitor)
    if says:
        chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=says)
    return conv


def visitor_says(conv: ChatConversation, body: str) -> ChatMessage:
    visitor = ChatVisitor.objects.get(pk=conv.visitor_id)
    return chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=body).message


def listed(response: Any) -> list[str]:
    return [row["conversation"].chat_id for row in response.context["rows"]]


def bodies(conv: ChatConversation, *, sender_type: str | None = None) -> list[str]:
    qs = ChatMessage.objects.filter(conversation=conv).order_by("seq")
    if sender_type:
        qs = qs.filter(sender_type=sender_type)
    return list(qs.values_list("body", flat=True))


def user_with(username: str, *codenames: str) -> AbstractUser:
    """A user without a role, holding exactly the given chat permissions."""
    user = get_user_model().objects.create_user(username=username, password="x")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="crm_chat", codename__in=codenames)
    )
    return user


@pytest.fixture
def owner(world: ChatWorld) -> Client:
    return client_for(world.owner)


@pytest.fixture
def employee(world: ChatWorld) -> Client:
    return client_for(world.employee)


# --------------------------------------------------------------------------- list


class InboxListTests:
    def test_it_shows_status_tabs_with_counts(self, world: ChatWorld, owner: Client) -> None:
        first, second, third = (new_chat(world.widget, says=f"hi {i}") for i in range(3))
        chat_service.mark_pending(conversation=second, by=world.owner)
        chat_service.close_conversation(conversation=third, by=world.owner)

        response = owner.get(INDEX)

        assert response.status_code == 200
        assert response.context["counts"] == {"open": 1, "pending": 1, "closed": 1}
        html = response.content.decode()
        for tab in ("Open", "Pending", "Closed"):
            assert re.search(rf'>{tab} <span class="badge">1</span>', html)
        assert listed(response) == [first.chat_id]
        assert listed(owner.get(INDEX, {"status": "pending"})) == [second.chat_id]
        assert listed(owner.get(INDEX, {"status": "closed"})) == [third.chat_id]
        assert set(listed(owner.get(INDEX, {"status": "all"}))) == {
            first.chat_id,
            second.chat_id,
            third.chat_id,
        }
        # An unknown tab falls back to open rather than erroring.
        assert listed(owner.get(INDEX, {"status": "bogus"})) == [first.chat_id]

    def test_status_tabs_keep_the_other_filters(self, world: ChatWorld, owner: Client) -> None:
        html = owner.get(
            INDEX, {"status": "closed", "q": "a&b", "widget": world.widget.pk, "page": 2}
        ).content.decode()

        start = html.index('aria-label="Status"')
        tabs = html[start : html.index("</nav>", start)]
        links = re.findall(r'href="\?([^"]+)"', tabs)
        assert f"q=a%26b&amp;widget={world.widget.pk}&amp;status=open" in links
        assert all("page=" not in link and link.count("status=") == 1 for link in links)

    def test_it_lists_newest_activity_first_with_a_preview(
        self, world: ChatWorld, owner: Client
    ) -> None:
        older = new_chat(world.widget, says="older question")
        newer = new_chat(world.widget, says="newer question")
        chat_service.send_agent_message(conversation=older, agent=world.owner, body="Agent answer")

        response = owner.get(INDEX)

        assert listed(response) == [older.chat_id, newer.chat_id]
        html = response.content.decode()
        assert "Agent: </span>Agent answer" in html
        assert "newer question" in html
        assert "older question" not in html  # only the latest message is previewed

    def test_the_preview_is_what_someone_said_never_a_system_line_or_note(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="Where is my parcel?")
        chat_service.send_system_message(conversation=conv, body="hush, agents only", internal=True)
        chat_service.send_system_message(conversation=conv, body="We're offline right now")

        html = owner.get(INDEX).content.decode()

        assert "Where is my parcel?" in html
        assert "hush" not in html and "offline right now" not in html

    def test_it_filters_by_assignee(self, world: ChatWorld, owner: Client) -> None:
        mine = new_chat(world.widget, says="a")
        hers = new_chat(world.widget, says="b")
        nobodys = new_chat(world.widget, says="c")
        chat_service.assign_conversation(conversation=mine, agent=world.owner, by=world.owner)
        chat_service.assign_conversation(conversation=hers, agent=world.employee, by=world.owner)

        assert listed(owner.get(INDEX, {"assigned": "me"})) == [mine.chat_id]
        assert listed(owner.get(INDEX, {"assigned": "unassigned"})) == [nobodys.chat_id]
        by_id = owner.get(INDEX, {"assigned": str(world.employee.pk)})
        assert listed(by_id) == [hers.chat_id]
        assert f'<option value="{world.employee.pk}" selected>' in by_id.content.decode()
        assert len(listed(owner.get(INDEX, {"assigned": "nonsense"}))) == 3

    def test_it_filters_by_widget(self, world: ChatWorld, owner: Client) -> None:
        main = new_chat(world.widget, says="main")
        other = new_chat(world.other_widget, says="other")

        assert listed(owner.get(INDEX, {"widget": str(world.widget.pk)})) == [main.chat_id]
        assert listed(owner.get(INDEX, {"widget": str(world.other_widget.pk)})) == [other.chat_id]
        assert len(listed(owner.get(INDEX, {"widget": "x"}))) == 2

    @pytest.mark.parametrize(
        "query", ["C1002", "c1002", "Grace", "grace@example", "blue widget", "BLUE WIDGET"]
    )
    def test_it_searches_chat_id_name_email_and_message_text(
        self, world: ChatWorld, owner: Client, query: str
    ) -> None:
        new_chat(world.widget, name="Alan", email="alan@example.com", says="red gadget")
        wanted = new_chat(
            world.widget, name="Grace", email="grace@example.com", says="Is the blue widget in?"
        )
        assert wanted.chat_id == "C1002"

        response = owner.get(INDEX, {"q": query})

        assert listed(response) == [wanted.chat_id]
        assert f'value="{query}"' in response.content.decode()

    def test_it_does_not_search_internal_notes(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hello")
        chat_service.send_system_message(conversation=conv, body="secret token", internal=True)
        response = owner.get(INDEX, {"q": "secret token"})
        assert listed(response) == []
        assert "No open chats match “secret token”." in response.content.decode()

    def test_it_paginates(self, world: ChatWorld, owner: Client) -> None:
        convs = [new_chat(world.widget, says=f"question {i}") for i in range(27)]

        first = owner.get(INDEX, {"assigned": "unassigned"})
        second = owner.get(INDEX, {"assigned": "unassigned", "page": "2"})

        assert len(listed(first)) == 25
        assert listed(second) == [c.chat_id for c in convs[:2]][::-1]
        assert "Page 1 of 2" in first.content.decode()
        html = second.content.decode()
        assert "Page 2 of 2" in html
        # Page links keep the filters.
        assert 'href="?assigned=unassigned&amp;page=1"' in html
        assert 'data-refresh-url="/crm/chat/?assigned=unassigned&amp;page=2"' in html
        assert listed(owner.get(INDEX, {"page": "99"})) == listed(second)

    def test_it_answers_htmx_with_the_list_partial_only(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hello")

        partial = owner.get(INDEX, headers={"HX-Request": "true"})
        full = owner.get(INDEX)

        body = partial.content.decode().strip()
        assert body.startswith('<div id="inbox-list"') and body.endswith("</div>")
        assert "<html" not in body and 'role="search"' not in body
        assert conv.chat_id in body
        assert "<html" in full.content.decode() and 'role="search"' in full.content.decode()
        # One URL, two representations: caches must key on the header.
        for response in (partial, full):
            assert "HX-Request" in response["Vary"]

    def test_it_answers_an_htmx_history_restore_with_the_whole_page(
        self, world: ChatWorld, owner: Client
    ) -> None:
        response = owner.get(
            INDEX, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
        )
        assert "<html" in response.content.decode()

    def test_it_shows_an_unread_badge_per_row(self, world: ChatWorld, owner: Client) -> None:
        unread = new_chat(world.widget, says="one")
        visitor_says(unread, "two")
        read = new_chat(world.widget, says="seen")
        chat_service.mark_read(conversation=read, reader="user")

        html = owner.get(INDEX).content.decode()

        rows = dict(re.findall(r'<tr data-conversation="([^"]+)" class="([^"]*)"', html))
        assert rows == {str(unread.external_id): "unread", str(read.external_id): ""}
        assert '2<span class="visually-hidden"> unread</span>' in html
        assert html.count('visually-hidden"> unread</span>') == 1

    def test_it_escapes_visitor_input(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, name=XSS_NAME, says="<script>alert(2)</script>")

        list_html = owner.get(INDEX).content.decode()
        page_html = owner.get(show_url(conv)).content.decode()

        for html in (list_html, page_html):
            assert XSS_NAME not in html
            assert "&lt;img src=x onerror=alert(1)&gt;" in html
            assert "<script>alert(2)</script>" not in html
            assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html

    def test_it_limits_employees_to_unassigned_and_their_own_chats(
        self, world: ChatWorld, employee: Client
    ) -> None:
        nobodys = new_chat(world.widget, says="a")
        hers = new_chat(world.widget, says="b")
        others = new_chat(world.widget, says="c")
        chat_service.assign_conversation(conversation=hers, agent=world.employee, by=world.owner)
        chat_service.assign_conversation(conversation=others, agent=world.owner, by=world.owner)

        response = employee.get(INDEX)

        assert set(listed(response)) == {nobodys.chat_id, hers.chat_id}
        assert response.context["counts"]["open"] == 2


# ------------------------------------------------------------------- conversation


class ConversationPageTests:
    def test_it_shows_the_transcript_with_internal_notes(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, name="Ann", says="Do you ship to Canada?")
        chat_service.send_agent_message(conversation=conv, agent=world.owner, body="Yes, we do!")
        chat_service.send_system_message(conversation=conv, body="VIP customer", internal=True)

        response = owner.get(show_url(conv))

        assert response.status_code == 200
        html = response.content.decode()
        order = [html.index(t) for t in ("Do you ship to Canada?", "Yes, we do!", "VIP customer")]
        assert order == sorted(order)
        assert "Olivia joined the chat." in html
        assert re.search(r'class="bubble system internal" data-seq="4"', html)
        assert "only agents see this" in html
        assert '<span class="who">Ann</span>' in html
        assert '<span class="who">Olivia</span>' in html
        config = json.loads(response.context["client_config"])
        assert config == {"conversation": str(conv.external_id), "lastSeq": 4, "canReply": True}

    def test_it_shows_the_visitor_sidebar(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(
            world.widget, name="Ann", email="ann@example.com", says="hi", ua=CHROME_ON_WINDOWS
        )
        visitor = ChatVisitor.objects.get(pk=conv.visitor_id)
        for i, url in enumerate(("https://shop.example/", "https://shop.example/pricing")):
            chat_service.record_page_view(visitor=visitor, url=url, title=f"Page {i}")
        chat_service.record_page_view(visitor=visitor, url="https://shop.example/checkout")

        response = owner.get(show_url(conv))

        html = response.content.decode()
        facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", html))
        # <wbr> lets a long address wrap before "@" and dots; it adds no character.
        assert facts["Email"].replace("<wbr>", "") == "ann@example.com"
        assert facts["Browser"] == "Chrome"
        assert facts["System"] == "Windows"
        assert "https://shop.example/checkout" in facts["Page"]
        trail = html[html.index('<ol class="trail">') :]
        trail = trail[: trail.index("</ol>")]
        assert re.findall(r'<a href="([^"]+)"', trail) == [
            "https://shop.example/checkout",
            "https://shop.example/pricing",
            "https://shop.example/",
        ]
        assert ">Page 1</a>" in trail  # titles are shown where known
        assert "Promote to person" in html

    def test_it_shows_the_country_with_its_flag(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, name="Ann", says="hi")
        ChatVisitor.objects.filter(pk=conv.visitor_id).update(country_code="GB")

        page = owner.get(show_url(conv)).content.decode()
        listing = owner.get(INDEX).content.decode()

        facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", page))
        assert facts["Country"] == "\U0001f1ec\U0001f1e7 GB"
        assert "\U0001f1ec\U0001f1e7 GB" in listing

    def test_it_lists_the_visitors_other_conversations(
        self, world: ChatWorld, owner: Client
    ) -> None:
        earlier = new_chat(world.widget, says="first visit")
        chat_service.close_conversation(conversation=earlier, by=world.owner)
        later = chat_service.open_conversation(
            visitor=ChatVisitor.objects.get(pk=earlier.visitor_id)
        )
        assert later.pk != earlier.pk

        html = owner.get(show_url(later)).content.decode()

        others = html[html.index("<h3>Other chats</h3>") :]
        assert f'href="{show_url(earlier)}">{earlier.chat_id}</a>' in others
        assert "Closed" in others
        assert (
            "<h3>Other chats</h3>"
            not in owner.get(show_url(new_chat(world.widget))).content.decode()
        )

    def test_it_hides_reply_and_actions_from_read_only_agents(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        viewer = client_for(user_with("vera", "view_chat", "view_all_chats"))

        response = viewer.get(show_url(conv))

        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="reply"' not in html and "Convert to lead" not in html
        assert json.loads(response.context["client_config"])["canReply"] is False

    def test_a_closed_chat_disables_the_reply_box(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        chat_service.close_conversation(conversation=conv, by=world.owner)
        html = owner.get(show_url(conv)).content.decode()
        assert re.search(r'<textarea id="reply-body"[^>]* disabled>', html)
        assert "Reopen it to reply" in html and ">Reopen</button>" in html


# --------------------------------------------------------------------------- JSON


class JsonEndpointTests:
    def test_messages_since_returns_only_newer_messages_with_internal_notes(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="one")
        visitor_says(conv, "two")
        chat_service.send_system_message(conversation=conv, body="note", internal=True)

        data = owner.get(messages_url(conv), {"since": "1"}).json()

        assert [(m["seq"], m["body"], m["internal"]) for m in data["messages"]] == [
            (2, "two", False),
            (3, "note", True),
        ]
        assert data["status"] == "open" and data["last_seq"] == 3
        assert data["visitor_read_up_to"] == 0
        assert owner.get(messages_url(conv), {"since": "3"}).json()["messages"] == []
        assert len(owner.get(messages_url(conv)).json()["messages"]) == 3
        bad = owner.get(messages_url(conv), {"since": "x"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid"

    def test_send_is_idempotent_by_client_id(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")

        first = post_json(owner, send_url(conv), {"body": " Hello! ", "client_id": "a1"})
        again = post_json(owner, send_url(conv), {"body": " Hello! ", "client_id": "a1"})

        assert first.status_code == 201 and again.status_code == 201
        assert first.json()["message"] == again.json()["message"]
        message = first.json()["message"]
        assert message["body"] == "Hello!" and message["sender_type"] == "user"
        assert message["sender_name"] == "Olivia" and message["client_id"] == "a1"
        assert bodies(conv, sender_type="user") == ["Hello!"]
        conv.refresh_from_db()
        assert conv.user_assigned_id == world.owner.pk  # replying picks the chat up
        other = post_json(owner, send_url(conv), {"body": "Hello!", "client_id": "a2"})
        assert other.json()["message"]["seq"] == message["seq"] + 1

    def test_send_to_a_closed_chat_is_refused(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        chat_service.close_conversation(conversation=conv, by=world.owner)
        response = post_json(owner, send_url(conv), {"body": "late"})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conversation_closed"
        assert "late" not in bodies(conv)

    def test_read_marks_visitor_messages_read(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="one")
        visitor_says(conv, "two")
        visitor_says(conv, "three")

        partly = post_json(owner, read_url(conv), {"up_to_seq": 2})
        rest = post_json(owner, read_url(conv), {})

        assert partly.json() == {"updated": 2} and rest.json() == {"updated": 1}
        assert not ChatMessage.objects.filter(conversation=conv, read_at__isnull=True).exists()
        assert post_json(owner, read_url(conv), {}).json() == {"updated": 0}

    def test_unread_counts_visible_open_chats(self, world: ChatWorld, employee: Client) -> None:
        new_chat(world.widget, says="one")
        theirs = new_chat(world.widget, says="two")
        chat_service.assign_conversation(conversation=theirs, agent=world.owner, by=world.owner)
        closed = new_chat(world.widget, says="three")
        chat_service.close_conversation(conversation=closed, by=world.owner)

        first = employee.get(UNREAD).json()
        new_chat(world.widget, says="four")
        second = employee.get(UNREAD).json()

        assert first["unread"] == 1 and second["unread"] == 2
        assert first["latest"] != second["latest"]  # the list's freshness marker moved


# ------------------------------------------------------------------------ actions


class ActionTests:
    def test_assign_to_me_to_another_agent_and_unassign(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        url = action_url(conv, "assign")

        me = owner.post(url, {"agent": "me"})
        conv.refresh_from_db()
        assert me.status_code == 302 and me["Location"] == show_url(conv)
        assert conv.user_assigned_id == world.owner.pk
        assert flashes(owner, me) == ["success: Assigned to Olivia."]

        other = owner.post(url, {"agent": str(world.employee.pk)})
        conv.refresh_from_db()
        assert conv.user_assigned_id == world.employee.pk
        assert flashes(owner, other) == ["success: Assigned to Emma."]
        page = owner.get(show_url(conv)).content.decode()
        assert f'<option value="{world.employee.pk}" selected>' in page

        nobody = owner.post(url, {"agent": ""})
        conv.refresh_from_db()
        assert conv.user_assigned_id is None
        assert flashes(owner, nobody) == ["success: Unassigned."]

        assert bodies(conv, sender_type="system") == [
            "Olivia joined the chat.",
            "Olivia assigned the chat to Emma.",
            "Olivia unassigned the chat.",
        ]

    def test_the_assign_menu_offers_only_agents_with_chat_access(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        outsider = get_user_model().objects.create_user(username="otto", password="x")
        gone = create_agent(username="gary", password="x", role=EMPLOYEE, validate=False)
        gone.is_active = False
        gone.save()

        response = owner.get(show_url(conv))

        assert [a.pk for a in response.context["agents"]] == [world.employee.pk, world.owner.pk]
        refused = owner.post(action_url(conv, "assign"), {"agent": str(outsider.pk)})
        assert flashes(owner, refused) == ["error: Choose an active agent."]
        conv.refresh_from_db()
        assert conv.user_assigned_id is None

    def test_an_employee_handing_a_chat_over_lands_on_the_inbox(
        self, world: ChatWorld, employee: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")

        response = employee.post(action_url(conv, "assign"), {"agent": str(world.owner.pk)})

        assert response.status_code == 302 and response["Location"] == INDEX
        assert flashes(employee, response) == ["success: Assigned to Olivia."]
        assert employee.get(show_url(conv)).status_code == 404

    @pytest.mark.parametrize(
        ("action", "status", "flash", "system"),
        [
            (
                "pending",
                "pending",
                "success: Chat C1001 is pending.",
                "This chat was marked pending by Olivia.",
            ),
            ("close", "closed", "success: Chat C1001 closed.", "This chat was closed by Olivia."),
        ],
    )
    def test_pending_and_close(
        self, world: ChatWorld, owner: Client, action: str, status: str, flash: str, system: str
    ) -> None:
        conv = new_chat(world.widget, says="hi")

        response = owner.post(action_url(conv, action))

        conv.refresh_from_db()
        assert response["Location"] == show_url(conv)
        assert conv.status == status and flashes(owner, response) == [flash]
        assert bodies(conv, sender_type="system") == [system]
        again = owner.post(action_url(conv, action))
        assert flashes(owner, again) == [f"error: Chat C1001 is already {status}."]
        assert bodies(conv, sender_type="system") == [system]

    def test_reopen(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        chat_service.close_conversation(conversation=conv, by=world.owner)

        response = owner.post(action_url(conv, "reopen"))

        conv.refresh_from_db()
        assert conv.status == "open" and conv.closed_at is None
        assert flashes(owner, response) == ["success: Chat C1001 reopened."]
        assert bodies(conv, sender_type="system")[-1] == "This chat was reopened by Olivia."

    def test_convert_creates_a_lead_with_the_transcript(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, name="Ann Lee", email="ann@example.com", says="Price?")
        chat_service.send_agent_message(conversation=conv, agent=world.owner, body="It's 10 €.")
        chat_service.send_system_message(conversation=conv, body="hush", internal=True)

        response = owner.post(action_url(conv, "convert"))

        lead = Lead.objects.get()
        assert response.status_code == 302 and response["Location"] == lead.get_absolute_url()
        assert flashes(owner, response) == [
            "success: Converted to lead “Ann Lee (ann@example.com) · chat C1001”."
        ]
        assert lead.source == "chat" and lead.owner == world.owner
        note = lead.notes.get().content
        assert note.startswith("Chat C1001 transcript")
        assert "Ann Lee: Price?" in note and "Olivia: It's 10 €." in note
        assert "hush" not in note  # internal notes stay out of the lead
        conv.refresh_from_db()
        assert conv.lead == lead
        person = Person.objects.get()
        assert lead.person == person and conv.visitor.person == person
        assert (
            bodies(conv, sender_type="system")[-1]
            == "Converted to lead “Ann Lee (ann@example.com) · chat C1001”."
        )

        lead_page = owner.get(lead.get_absolute_url()).content.decode()
        assert "Chat C1001 transcript" in lead_page and "Price?" in lead_page
        chat_page = owner.get(show_url(conv)).content.decode()
        assert "View lead" in chat_page and "Convert to lead" not in chat_page

    def test_converting_twice_is_refused_kindly(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        first = owner.post(action_url(conv, "convert"))
        assert flashes(owner, first) == ["success: Converted to lead “Chat visitor · chat C1001”."]

        again = owner.post(action_url(conv, "convert"))

        assert again.status_code == 302 and again["Location"] == show_url(conv)
        assert flashes(owner, again) == ["error: Chat C1001 was already converted to a lead."]
        assert Lead.objects.count() == 1
        assert owner.get(again["Location"]).status_code == 200

    def test_promote_links_the_visitor_to_a_person(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, name="Grace Hopper", email="grace@example.com", says="hi")

        response = owner.post(action_url(conv, "promote"))

        person = Person.objects.get()
        assert (person.first_name, person.last_name) == ("Grace", "Hopper")
        assert person.emails.get().address == "grace@example.com"
        assert flashes(owner, response) == ["success: Visitor linked to Grace Hopper."]
        assert ChatVisitor.objects.get(pk=conv.visitor_id).person == person
        assert bodies(conv, sender_type="system") == ["Visitor linked to person Grace Hopper."]
        html = owner.get(show_url(conv)).content.decode()
        assert f'<a href="{person.get_absolute_url()}">Grace Hopper</a>' in html
        assert "Promote to person" not in html

    def test_promote_without_a_name_or_email_is_refused(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        response = owner.post(action_url(conv, "promote"))
        assert flashes(owner, response) == [
            "error: Ask the visitor for a name or email before promoting them."
        ]
        assert not Person.objects.exists()


# ------------------------------------------------------------------- permissions


class PermissionTests:
    def test_anonymous_users_are_sent_to_log_in(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        anonymous = Client()
        for method, url in [
            ("get", INDEX),
            ("get", UNREAD),
            ("get", show_url(conv)),
            ("get", messages_url(conv)),
            ("post", send_url(conv)),
            ("post", read_url(conv)),
            ("post", action_url(conv, "close")),
        ]:
            response = getattr(anonymous, method)(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url
        assert bodies(conv) == ["hi"]

    def test_users_without_a_role_get_403(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        nobody = client_for(get_user_model().objects.create_user(username="nina", password="x"))
        for method, url in [
            ("get", INDEX),
            ("get", UNREAD),
            ("get", show_url(conv)),
            ("get", messages_url(conv)),
            ("post", send_url(conv)),
            ("post", read_url(conv)),
            ("post", action_url(conv, "close")),
        ]:
            assert getattr(nobody, method)(url).status_code == 403, url
        conv.refresh_from_db()
        assert conv.status == "open"

    def test_employees_get_404_for_chats_of_other_agents(
        self, world: ChatWorld, employee: Client
    ) -> None:
        nobodys = new_chat(world.widget, says="hi")
        others = new_chat(world.widget, says="hello")
        chat_service.assign_conversation(conversation=others, agent=world.owner, by=world.owner)

        assert employee.get(show_url(nobodys)).status_code == 200
        for method, url in [
            ("get", show_url(others)),
            ("get", messages_url(others)),
            ("post", send_url(others)),
            ("post", read_url(others)),
            ("post", action_url(others, "assign")),
            ("post", action_url(others, "close")),
        ]:
            assert getattr(employee, method)(url).status_code == 404, url
        others.refresh_from_db()
        assert others.status == "open" and others.user_assigned_id == world.owner.pk

    def test_view_only_agents_cannot_act_or_send(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        viewer = client_for(user_with("vera", "view_chat"))

        assert viewer.get(show_url(conv)).status_code == 200
        assert viewer.get(messages_url(conv)).status_code == 200
        assert post_json(viewer, send_url(conv), {"body": "hi"}).status_code == 403
        for name in ("assign", "pending", "close", "reopen", "convert", "promote"):
            assert viewer.post(action_url(conv, name), {"agent": "me"}).status_code == 403, name
        conv.refresh_from_db()
        assert (conv.status, conv.user_assigned_id, conv.lead_id) == ("open", None, None)
        assert bodies(conv) == ["hi"]

    def test_agents_without_add_lead_cannot_convert(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, name="Ann", says="hi")
        replier = client_for(user_with("rick", "view_chat", "reply_chat"))

        assert "Convert to lead" not in replier.get(show_url(conv)).content.decode()
        response = replier.post(action_url(conv, "convert"))

        assert flashes(replier, response) == ["error: You may not create leads."]
        assert not Lead.objects.exists()
        promote = replier.post(action_url(conv, "promote"))
        assert flashes(replier, promote) == ["error: You may not create people."]
        assert not Person.objects.exists()

    def test_actions_and_send_need_post(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        for url in (send_url(conv), read_url(conv), action_url(conv, "close")):
            assert owner.get(url).status_code == 405, url
        assert owner.post(INDEX).status_code == 405
        conv.refresh_from_db()
        assert conv.status == "open"

    def test_a_disabled_module_hides_every_chat_url(
        self, world: ChatWorld, owner: Client, settings: Any
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        settings.CRM_MODULES = []
        for method, url in [
            ("get", INDEX),
            ("get", UNREAD),
            ("get", show_url(conv)),
            ("get", messages_url(conv)),
            ("post", send_url(conv)),
            ("post", action_url(conv, "close")),
        ]:
            assert getattr(owner, method)(url).status_code == 404, url
        conv.refresh_from_db()
        assert conv.status == "open"
        assert 'data-nav="chat"' not in owner.get(reverse("crm-dashboard")).content.decode()

    def test_an_unknown_conversation_is_404(self, world: ChatWorld, owner: Client) -> None:
        missing = "00000000-0000-0000-0000-000000000000"
        assert owner.get(f"/crm/chat/{missing}/").status_code == 404
        assert owner.post(f"/crm/chat/{missing}/close/").status_code == 404


# --------------------------------------------------------------------- bad input


class BadInputTests:
    @pytest.mark.parametrize("body", ["", "{}", '{"body": "   "}', '{"body": 5}'])
    def test_an_empty_or_non_text_message_is_422(
        self, world: ChatWorld, owner: Client, body: str
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        response = post_json(owner, send_url(conv), body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid"
        assert response.json()["error"]["message"]
        assert bodies(conv) == ["hi"]

    @pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"text"'])
    def test_malformed_json_is_400(self, world: ChatWorld, owner: Client, body: str) -> None:
        conv = new_chat(world.widget, says="hi")
        for url in (send_url(conv), read_url(conv)):
            response = post_json(owner, url, body)
            assert response.status_code == 400, url
            assert response.json() == {
                "error": {"code": "bad_request", "message": "Send a JSON object."}
            }
        assert bodies(conv) == ["hi"]

    @pytest.mark.parametrize("up_to", ["-1", '"soon"', "null", "[3]", "1e400"])
    def test_a_bad_read_position_is_422(self, world: ChatWorld, owner: Client, up_to: str) -> None:
        conv = new_chat(world.widget, says="hi")
        response = post_json(owner, read_url(conv), f'{{"up_to_seq": {up_to}}}')
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid"
        assert ChatMessage.objects.get(conversation=conv).read_at is None

    def test_huge_positions_are_harmless(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        huge = 10**30
        since = owner.get(messages_url(conv), {"since": str(huge)})
        assert since.status_code == 200 and since.json()["messages"] == []
        read = post_json(owner, read_url(conv), {"up_to_seq": huge})
        assert (read.status_code, read.json()) == (200, {"updated": 1})
        assert ChatMessage.objects.get(conversation=conv).read_at is not None

    def test_a_bad_client_id_is_422(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        response = post_json(owner, send_url(conv), {"body": "x", "client_id": "no spaces!"})
        assert response.status_code == 422
        assert bodies(conv) == ["hi"]

    def test_an_unknown_action_is_404(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        assert owner.post(action_url(conv, "explode")).status_code == 404
        assert bodies(conv) == ["hi"]

    @pytest.mark.parametrize(
        ("agent", "flash"),
        [("999999", "error: Choose an active agent."), ("abc", "error: That value is not valid.")],
    )
    def test_assigning_to_no_real_agent_is_refused(
        self, world: ChatWorld, owner: Client, agent: str, flash: str
    ) -> None:
        conv = new_chat(world.widget, says="hi")

        response = owner.post(action_url(conv, "assign"), {"agent": agent})

        assert response.status_code == 302 and response["Location"] == show_url(conv)
        assert flashes(owner, response) == [flash]
        conv.refresh_from_db()
        assert conv.user_assigned_id is None
        assert bodies(conv) == ["hi"]


# ------------------------------------------------------------------- query count


def _count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


class QueryCountTests:
    """The pages cost the same number of queries whatever their length.

    Each page is measured twice (5 then 30 rows) and the two counts must match.
    """

    def test_the_inbox_list_is_constant(self, world: ChatWorld, owner: Client) -> None:
        def grow_to(n: int) -> None:
            while ChatConversation.objects.count() < n:
                i = ChatConversation.objects.count()
                conv = new_chat(world.widget, name=f"V{i}", says=f"q{i}")
                if i % 2:
                    chat_service.assign_conversation(
                        conversation=conv, agent=world.employee, by=world.owner
                    )
                    chat_service.send_agent_message(
                        conversation=conv, agent=world.employee, body="a"
                    )

        grow_to(5)
        owner.get(INDEX)  # warm the session and content-type caches
        small = _count_queries(owner, INDEX)
        grow_to(30)
        large = _count_queries(owner, INDEX)
        assert small == large
        assert len(listed(owner.get(INDEX))) == 25

    def test_the_conversation_page_is_constant(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, name="Ann", says="hello")
        visitor = ChatVisitor.objects.get(pk=conv.visitor_id)

        def grow_to(n: int) -> None:
            while (count := ChatMessage.objects.filter(conversation=conv).count()) < n:
                if count % 3 == 0:
                    chat_service.send_agent_message(
                        conversation=conv, agent=world.owner, body=f"m{count}"
                    )
                elif count % 3 == 1:
                    chat_service.send_agent_message(
                        conversation=conv, agent=world.employee, body=f"m{count}"
                    )
                else:
                    visitor_says(conv, f"m{count}")
                chat_service.record_page_view(
                    visitor=visitor, url=f"https://shop.example/p{count}", title=f"P{count}"
                )

        grow_to(5)
        owner.get(show_url(conv))
        small = _count_queries(owner, show_url(conv))
        grow_to(30)
        large = _count_queries(owner, show_url(conv))
        assert small == large
        assert ChatMessage.objects.filter(conversation=conv).count() >= 30


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("GB", "\U0001f1ec\U0001f1e7"),
        ("us", "\U0001f1fa\U0001f1f8"),
        ("", ""),
        ("G", ""),
        ("G1", ""),
        ("ÄB", ""),
    ],
)
def test_flag_turns_a_country_code_into_its_emoji(code: str, expected: str) -> None:
    assert flag(code) == expected
