"""Inbox search on SQLite (FTS5) and PostgreSQL (tsvector + pg_trgm): the same tests
run on both stacks, so they also check that the two agree."""

from __future__ import annotations

import os
import re

import pytest
from django.db import connection
from django.test import Client

from crm.chat import search as search_module
from crm.chat.models import ChatConversation
from crm.chat.search import Search, fts5_query, highlight
from crm.chat.services import chat_service
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import INDEX, listed, new_chat, show_url, visitor_says
from tests.security.xss_payloads import live_as_html

# SQLite has one plan; PostgreSQL two (see ``crm.chat.search.is_common``).
PLANS = (
    ["index", "walk"] if os.environ.get("DATABASE_URL", "").startswith("postgres") else ["index"]
)


@pytest.fixture(autouse=True, params=PLANS)
def plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every search test runs with both PostgreSQL plans: the list of matches from the
    index (rare words), and the walk of the tab (common words, chosen at scale)."""
    if request.param == "walk":
        assert connection.vendor == "postgresql"
        monkeypatch.setattr(search_module, "is_common", lambda search: True)
    return str(request.param)


def search(client: Client, q: str, **params: str) -> list[str]:
    return listed(client.get(INDEX, {"q": q, **params}))


class SearchSyntaxTests:
    def test_words_are_stemmed(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="I asked for a refund yesterday")
        new_chat(world.widget, says="Where is my parcel?")
        assert search(owner, "refunds") == [conv.chat_id]
        assert search(owner, "REFUNDING") == [conv.chat_id]

    def test_all_words_must_match_anywhere_in_the_chat(
        self, world: ChatWorld, owner: Client
    ) -> None:
        both = new_chat(world.widget, says="the blue parcel arrived broken")
        new_chat(world.widget, says="the blue parcel arrived")
        assert search(owner, "blue broken") == [both.chat_id]

    def test_quoted_phrases_excluded_words_and_or(self, world: ChatWorld, owner: Client) -> None:
        a = new_chat(world.widget, says="the parcel is blue and damaged")
        b = new_chat(world.widget, says="a damaged blue parcel")
        c = new_chat(world.widget, says="my invoice is wrong")
        assert search(owner, '"blue parcel"') == [b.chat_id]
        assert search(owner, "parcel -blue") == []
        assert search(owner, "damaged -invoice") == [b.chat_id, a.chat_id]
        assert search(owner, "invoice or parcel") == [c.chat_id, b.chat_id, a.chat_id]

    def test_operators_and_quotes_typed_by_agents_are_words_not_syntax(
        self, world: ChatWorld, owner: Client
    ) -> None:
        new_chat(world.widget, says="hello")
        for q in ['"', 'a "b', "NEAR(a b)", "x AND", "*", "col:value", "-", "--x", "^a", "(("]:
            response = owner.get(INDEX, {"q": q})
            assert response.status_code == 200, q

    def test_the_websearch_translation_for_fts5(self) -> None:
        assert fts5_query("blue parcel") == '"blue" AND "parcel"'
        assert fts5_query('"blue parcel" -broken') == '("blue parcel") NOT "broken"'
        assert fts5_query("a or b c") == '("a" OR "b") AND "c"'
        assert fts5_query('say "hi') == '"say" AND "hi"'
        assert fts5_query('a""b') == '"a""""b"'
        assert fts5_query("-only -negative") is None
        assert fts5_query("or") == '"or"'


class SearchFieldsAndRankingTests:
    def test_a_chat_id_in_any_spelling_finds_that_chat(
        self, world: ChatWorld, owner: Client
    ) -> None:
        wanted = new_chat(world.widget, says="hello")
        new_chat(world.widget, says=f"see also {wanted.chat_id}")
        number = wanted.chat_id[1:]
        for q in (wanted.chat_id, wanted.chat_id.lower(), f"#{wanted.chat_id}", f"C00{number}"):
            assert search(owner, q) == [wanted.chat_id], q

    def test_an_exact_email_comes_first_then_newest(self, world: ChatWorld, owner: Client) -> None:
        exact = new_chat(world.widget, email="ann@example.com", says="hi")
        new_chat(world.widget, email="joann@example.com", says="hi")
        newest = new_chat(world.widget, says="write to ann@example.com")
        hits = search(owner, "ANN@example.com")
        assert hits[0] == exact.chat_id
        assert set(hits) == {exact.chat_id, newest.chat_id} | set(hits[1:])
        assert len(hits) == 3

    def test_partial_names_emails_and_subjects(self, world: ChatWorld, owner: Client) -> None:
        grace = new_chat(world.widget, name="Grace Hopper", email="gh@navy.example")
        subject = new_chat(world.widget, says="x")
        ChatConversation.objects.filter(pk=subject.pk).update(subject="Order 8812 delayed")
        assert search(owner, "hopp") == [grace.chat_id]
        assert search(owner, "navy.ex") == [grace.chat_id]
        assert search(owner, "8812 del") == [subject.chat_id]

    def test_the_hit_shows_the_newest_matching_message_linked_to_it(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="my parcel is late")
        visitor_says(conv, "nothing to do with it")
        newer = visitor_says(conv, "the parcel came at last")
        visitor_says(conv, "thanks")

        html = owner.get(INDEX, {"q": "parcel"}).content.decode()

        link = f'href="{show_url(conv)}#m{newer.seq}"'
        assert link in html
        assert "the <mark>parcel</mark> came at last" in html
        page = owner.get(show_url(conv)).content.decode()
        assert f'id="m{newer.seq}"' in page

    def test_a_search_across_all_tabs_shows_each_status(
        self, world: ChatWorld, owner: Client
    ) -> None:
        open_ = new_chat(world.widget, says="parcel one")
        closed = new_chat(world.widget, says="parcel two")
        chat_service.close_conversation(conversation=closed, by=world.owner)

        assert search(owner, "parcel") == [open_.chat_id]
        assert search(owner, "parcel", status="closed") == [closed.chat_id]
        response = owner.get(INDEX, {"q": "parcel", "status": "all"})
        assert listed(response) == [closed.chat_id, open_.chat_id]
        html = response.content.decode()
        assert '<span class="badge status-closed">closed</span>' in html
        assert '<span class="badge status-open">open</span>' in html


class SearchScopeTests:
    def test_employees_find_only_chats_they_may_open(
        self, world: ChatWorld, employee: Client
    ) -> None:
        mine = new_chat(world.widget, says="parcel mine")
        hers = new_chat(world.widget, says="parcel hers")
        free = new_chat(world.widget, says="parcel free")
        chat_service.assign_conversation(conversation=mine, agent=world.employee, by=world.owner)
        chat_service.assign_conversation(conversation=hers, agent=world.owner, by=world.owner)

        assert sorted(search(employee, "parcel")) == sorted([free.chat_id, mine.chat_id])
        assert search(employee, hers.chat_id) == []

    def test_deleted_chats_are_not_found_and_purged_messages_are_gone_from_the_index(
        self, world: ChatWorld, owner: Client
    ) -> None:
        gone = new_chat(world.widget, says="parcel gone")
        kept = new_chat(world.other_widget, says="parcel kept")
        chat_service.delete_conversation(conversation=gone, by=world.owner)
        assert search(owner, "parcel") == [kept.chat_id]

        chat_service.delete_widget(widget=world.widget)
        chat_service.purge_widget(widget=world.widget)
        assert search(owner, "parcel") == [kept.chat_id]
        assert search(owner, "gone", status="all") == []


class SearchSafetyTests:
    @pytest.mark.parametrize("payload", [p for p in live_as_html() if len(p) < 4900])
    def test_matched_text_is_escaped_in_the_snippet(
        self, world: ChatWorld, owner: Client, payload: str
    ) -> None:
        new_chat(world.widget, says=f"zebra {payload} zebra")
        html = owner.get(INDEX, {"q": "zebra"}).content.decode()
        snippet = re.search(r'class="search-hit"[^>]*>(.*?)</a>', html, re.S)
        assert snippet is not None
        # Only the highlight is markup; everything typed comes out as text.
        assert re.sub(r"</?mark>", "", snippet[1]).count("<") == 0

    def test_markup_and_entities_typed_in_a_message_stay_in_the_snippet_as_text(
        self, world: ChatWorld, owner: Client
    ) -> None:
        new_chat(world.widget, says="My <b>parcel</b> & co &amp; <i>x</i>")
        html = owner.get(INDEX, {"q": "parcel"}).content.decode()
        # PostgreSQL's headline may start at the match; what it shows is the text typed.
        assert "<mark>parcel</mark>&lt;/b&gt; &amp; co &amp;amp; &lt;i&gt;x&lt;/i&gt;" in html

    def test_marker_characters_typed_in_a_message_cannot_open_a_tag(self) -> None:
        assert highlight("\ue000<b>\ue001 x \ue000y") == "<mark>&lt;b&gt;</mark> x y"
        assert highlight("a \ue001\ue001 b") == "a  b"

    def test_the_parsed_box(self) -> None:
        assert Search.parse("  ") is None
        assert Search.parse("#c0042") == Search(text="#c0042", chat_id="C42", email=None)
        assert Search.parse("A@B.example").email == "a@b.example"  # type: ignore[union-attr]
        assert Search.parse("x\x00y").text == "xy"  # type: ignore[union-attr]
