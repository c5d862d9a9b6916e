"""Chats of a deleted widget stay in the inbox: listed, searchable, readable, marked.

Agents may still reply: the visitor can't see it on the website any more, but a
visitor who left an email address gets the reply by email, as any offline visitor.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from crm.chat.models import ChatConversation, ChatVisitor
from crm.chat.notifications import send_offline_reply_email
from crm.chat.services import chat_service
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import (
    client_for,
    listed,
    new_chat,
    post_json,
    send_url,
    show_url,
)

pytestmark = pytest.mark.django_db

INDEX = reverse("crm-chat-index")
TAG = "deleted widget"


@pytest.fixture
def owner(world: ChatWorld) -> Client:
    return client_for(world.owner)


@pytest.fixture
def gone(world: ChatWorld) -> ChatConversation:
    """A chat on the main widget, which is then deleted; the other widget has one too."""
    conv = new_chat(world.widget, name="Ann", email="ann@example.org", says="Where is my parcel?")
    new_chat(world.other_widget, name="Bob", says="Hello")
    chat_service.delete_widget(widget=world.widget)
    return conv


def _row(html: str, chat_id: str) -> str:
    start = html.index(f">{chat_id}</a>")
    return html[start : html.index("</tr>", start)]


class DeletedWidgetInboxListTests:
    def test_its_chats_stay_listed_with_a_tag_on_their_rows_only(
        self, world: ChatWorld, owner: Client, gone: ChatConversation
    ) -> None:
        response = owner.get(INDEX)
        assert gone.chat_id in listed(response)
        html = response.content.decode()
        assert TAG in _row(html, gone.chat_id)
        other = next(c for c in listed(response) if c != gone.chat_id)
        assert TAG not in _row(html, other)

    def test_its_chats_are_found_by_message_text_and_name(
        self, owner: Client, gone: ChatConversation
    ) -> None:
        for term in ("parcel", "Ann", gone.chat_id):
            assert listed(owner.get(INDEX, {"q": term})) == [gone.chat_id], term

    def test_the_widget_filter_lists_it_marked_and_filters_by_it(
        self, world: ChatWorld, owner: Client, gone: ChatConversation
    ) -> None:
        response = owner.get(INDEX)
        html = response.content.decode()
        assert ">Main site (deleted widget)</option>" in html
        assert ">Other site</option>" in html
        assert listed(owner.get(INDEX, {"widget": world.widget.pk})) == [gone.chat_id]

    def test_the_list_costs_no_extra_query_for_the_mark(
        self, world: ChatWorld, owner: Client, gone: ChatConversation
    ) -> None:
        with CaptureQueriesContext(connection) as one:
            owner.get(INDEX)
        for _ in range(3):
            new_chat(world.other_widget, says="more")
        chat_service.restore_widget(widget=world.widget)
        for _ in range(3):
            new_chat(world.widget, says="more")
        chat_service.delete_widget(widget=world.widget)
        with CaptureQueriesContext(connection) as more:
            owner.get(INDEX)
        assert len(more) == len(one)


class DeletedWidgetConversationPageTests:
    def test_it_shows_the_transcript_the_tag_and_the_note(
        self, owner: Client, gone: ChatConversation
    ) -> None:
        response = owner.get(show_url(gone))
        assert response.status_code == 200
        html = response.content.decode()
        assert "Where is my parcel?" in html
        assert 'id="widget-deleted-tag"' in html
        sidebar = html[html.index('aria-label="Visitor"') :]
        assert "Main site" in sidebar and TAG in sidebar
        note = html[html.index('id="widget-deleted-note"') :]
        assert "no longer sees replies on the website" in note[: note.index("</p>")]
        assert "by email" in note[: note.index("</p>")]

    def test_a_live_widgets_chat_has_neither(self, world: ChatWorld, owner: Client) -> None:
        html = owner.get(show_url(new_chat(world.widget, says="hi"))).content.decode()
        assert "widget-deleted-tag" not in html and "widget-deleted-note" not in html
        assert TAG not in html

    def test_an_agent_can_still_reply_and_an_offline_visitor_gets_it_by_email(
        self, world: ChatWorld, owner: Client, gone: ChatConversation
    ) -> None:
        ChatVisitor.objects.filter(pk=gone.visitor_id).update(
            last_seen_at=timezone.now() - timedelta(minutes=10)
        )
        response = post_json(owner, send_url(gone), {"body": "It ships today.", "client_id": "r-1"})
        assert response.status_code == 201, response.content

        job = DBTaskResult.objects.get(task_path__endswith="send_offline_reply_email")
        send_offline_reply_email.call(*job.args_kwargs["args"])
        (sent,) = mail.outbox
        assert sent.to == ["ann@example.org"] and "It ships today." in sent.body

    def test_the_deleted_widget_name_is_escaped(self, world: ChatWorld, owner: Client) -> None:
        chat_service.update_widget(widget=world.widget, name="<b>Shop</b>")
        conv = new_chat(world.widget, says="hi")
        chat_service.delete_widget(widget=world.widget)
        for url in (INDEX, show_url(conv)):
            html = owner.get(url).content.decode()
            assert "<b>Shop</b>" not in html and "&lt;b&gt;Shop&lt;/b&gt;" in html
