"""The inbox list: tabs, filters, search, previews, and its cost in queries."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from crm.chat.services import chat_service
from crm.chat.templatetags.chat_tags import flag
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import (
    INDEX,
    XSS_NAME,
    listed,
    new_chat,
    show_url,
    visitor_says,
)

pytestmark = pytest.mark.django_db


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

    def test_a_long_preview_is_cut_to_80_characters_and_escaped(
        self, world: ChatWorld, owner: Client
    ) -> None:
        new_chat(world.widget, says="<b>x</b>" + "é" * 100)
        exact = new_chat(world.widget, says="y" * 80)

        html = owner.get(INDEX).content.decode()

        assert "&lt;b&gt;x&lt;/b&gt;" + "é" * 71 + "…<br>" in html
        assert "y" * 80 + "<br>" in html and exact.chat_id in html
        assert "<b>x</b>" not in html

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

    def test_it_finds_internal_notes_for_agents(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hello")
        chat_service.send_system_message(conversation=conv, body="secret token", internal=True)
        response = owner.get(INDEX, {"q": "secret token"})
        assert listed(response) == [conv.chat_id]
        assert "<mark>secret</mark> <mark>token</mark>" in response.content.decode()

    def test_it_paginates(self, world: ChatWorld, owner: Client) -> None:
        convs = [new_chat(world.widget, says=f"question {i}") for i in range(27)]

        first = owner.get(INDEX, {"assigned": "unassigned"})
        second = owner.get(INDEX, {"assigned": "unassigned", "page": "2"})

        assert len(listed(first)) == 25
        assert listed(second) == [c.chat_id for c in convs[:2]][::-1]
        assert '<span aria-current="page">Page 1</span>' in first.content.decode()
        assert 'href="?assigned=unassigned&amp;page=2" id="inbox-next"' in first.content.decode()
        html = second.content.decode()
        assert '<span aria-current="page">Page 2</span>' in html
        assert 'id="inbox-next"' not in html
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
