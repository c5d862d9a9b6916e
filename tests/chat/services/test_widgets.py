from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from crm.chat import selectors
from crm.chat.models import (
    ChatConversation,
    ChatMessage,
    ChatVisitor,
    ChatVisitorPageView,
    ChatWidget,
)
from crm.chat.services import NotAllowed, chat_service
from crm.core.models import Lead, Person
from tests.chat.conftest import ChatWorld


@pytest.mark.django_db
class WidgetTests:
    def test_it_creates_a_widget_with_a_64_char_key_and_defaults(self):
        w = chat_service.create_widget(name="Site")
        assert len(w.public_key) == 64 and w.color == "#2563eb" and w.position == "bottom-right"
        assert w.allowed_origins == []
        other = chat_service.create_widget(name="Site 2")
        assert other.public_key != w.public_key

    @override_settings(CRM_PUBLIC_URL="https://crm.example.com/")
    def test_the_embed_snippet_points_at_the_public_url(self):
        w = chat_service.create_widget(name="Site")
        snippet = w.embed_snippet()
        assert f"s.src='https://crm.example.com/p/chat/{w.public_key}.js'" in snippet
        assert snippet.startswith("<!-- crm-chat widget -->\n<script>(function(){")

    def test_it_normalises_origins_from_text(self):
        w = chat_service.create_widget(
            name="S", allowed_origins="HTTPS://Shop.Example:443/\n\nhttp://localhost:3000\n"
        )
        assert w.allowed_origins == ["https://shop.example", "http://localhost:3000"]
        assert w.origin_allowed("https://shop.example")
        assert not w.origin_allowed("https://evil.example")
        assert not w.origin_allowed(None)

    @pytest.mark.parametrize(
        "fields",
        [
            {"color": "blue"},
            {"color": "#12345"},
            {"position": "top"},
            {"allowed_origins": "https://*.example.com"},
            {"allowed_origins": "https://shop.example/path"},
            {"allowed_origins": "ftp://shop.example"},
            {"allowed_origins": ["https://Shop.example"]},
            {"name": ""},
        ],
    )
    def test_it_rejects_invalid_settings_and_writes_nothing(self, fields):
        with pytest.raises(ValidationError):
            chat_service.create_widget(**{"name": "S", **fields})
        assert ChatWidget.objects.count() == 0

    def test_regenerating_the_key_invalidates_the_old_one(self):
        w = chat_service.create_widget(name="S")
        old = w.public_key
        chat_service.regenerate_public_key(widget=w)
        assert ChatWidget.objects.get(pk=w.pk).public_key == w.public_key != old


def _chat_with_messages(world: ChatWorld, widget: ChatWidget, *bodies: str) -> ChatConversation:
    visitor, _ = world.service.identify_visitor(widget=widget, token=None)
    conv = world.service.open_conversation(visitor=visitor)
    for body in bodies:
        world.service.send_visitor_message(conversation=conv, visitor=visitor, body=body)
    return conv


def _rows(widget: ChatWidget) -> tuple[int, int, int, int]:
    return (
        ChatVisitor.objects.filter(widget=widget).count(),
        ChatConversation.objects.filter(widget=widget).count(),
        ChatMessage.objects.filter(conversation__widget=widget).count(),
        ChatVisitorPageView.objects.filter(visitor__widget=widget).count(),
    )


class WidgetSoftDeleteTests:
    def test_it_keeps_visitors_conversations_and_messages(self, world: ChatWorld):
        _chat_with_messages(world, world.widget, "one", "two")
        world.service.record_page_view(visitor=world.visitor, url="https://shop.example/a")
        before = _rows(world.widget)

        returned = world.service.delete_widget(widget=world.widget)

        stored = ChatWidget.objects.get(pk=world.widget.pk)
        assert returned.deleted_at is not None and stored.deleted_at == returned.deleted_at
        assert stored.is_deleted and stored.is_active  # restoring brings back the old state
        assert _rows(world.widget) == before and before[1:3] == (1, 2)

    def test_it_stops_serving_the_key_and_restoring_serves_the_same_key(self, world: ChatWorld):
        key = world.widget.public_key
        world.service.delete_widget(widget=world.widget)
        assert selectors.widget_by_public_key(public_key=key) is None
        assert selectors.widget_by_public_key(public_key=world.other_widget.public_key)

        restored = world.service.restore_widget(widget=world.widget)

        assert restored.deleted_at is None
        assert selectors.widget_by_public_key(public_key=key) == world.widget
        assert ChatWidget.objects.get(pk=world.widget.pk).public_key == key

    def test_it_refuses_to_delete_twice_or_restore_a_live_widget(self, world: ChatWorld):
        with pytest.raises(NotAllowed):
            world.service.restore_widget(widget=world.widget)
        world.service.delete_widget(widget=world.widget)
        first = ChatWidget.objects.get(pk=world.widget.pk).deleted_at
        with pytest.raises(NotAllowed, match="already deleted"):
            world.service.delete_widget(widget=world.widget)
        assert ChatWidget.objects.get(pk=world.widget.pk).deleted_at == first

    def test_a_deleted_widget_can_not_be_changed_or_rekeyed(self, world: ChatWorld):
        key = world.widget.public_key
        stale = ChatWidget.objects.get(pk=world.widget.pk)
        world.service.delete_widget(widget=world.widget)
        with pytest.raises(NotAllowed, match="restore it first"):
            world.service.update_widget(widget=stale, name="Renamed", is_active=True)
        with pytest.raises(NotAllowed, match="restore it first"):
            world.service.regenerate_public_key(widget=stale)
        stored = ChatWidget.objects.get(pk=world.widget.pk)
        assert (stored.name, stored.public_key, stored.is_deleted) == ("Main site", key, True)

    def test_a_purged_widget_can_not_be_changed(self, world: ChatWorld):
        stale = ChatWidget.objects.get(pk=world.widget.pk)
        world.service.delete_widget(widget=world.widget)
        world.service.purge_widget(widget=world.widget)
        with pytest.raises(NotAllowed, match="no longer exists"):
            world.service.update_widget(widget=stale, name="Renamed")
        assert not ChatWidget.objects.filter(pk=stale.pk).exists()

    def test_a_stale_instance_never_writes_back_an_old_key(self, world: ChatWorld):
        stale = ChatWidget.objects.get(pk=world.widget.pk)
        new_key = world.service.regenerate_public_key(widget=world.widget).public_key

        world.service.update_widget(widget=stale, name="Renamed")

        stored = ChatWidget.objects.get(pk=world.widget.pk)
        assert (stored.name, stored.public_key) == ("Renamed", new_key)

    def test_the_settings_list_and_the_inbox_filter_see_deleted_widgets(self, world: ChatWorld):
        world.service.delete_widget(widget=world.widget)
        assert list(selectors.widget_list()) == [world.other_widget]
        assert list(selectors.widget_list(deleted=True)) == [world.widget]
        assert list(selectors.widget_list(deleted=None)) == [world.widget, world.other_widget]
        choices = {w.name: w.is_deleted for w in selectors.widget_choices()}
        assert choices == {"Main site": True, "Other site": False}


class WidgetPurgeTests:
    def test_it_destroys_exactly_that_widgets_rows(self, world: ChatWorld):
        conv = _chat_with_messages(world, world.widget, "one", "two", "three")
        world.service.record_page_view(visitor=conv.visitor, url="https://shop.example/a")
        world.service.update_visitor_details(visitor=conv.visitor, email="ann@example.com")
        lead = world.service.convert_to_lead(conversation=conv, by=world.owner)
        _chat_with_messages(world, world.other_widget, "elsewhere")
        kept = _rows(world.other_widget)
        expected = selectors.widget_rows(widget=world.widget)
        assert (expected.visitors, expected.conversations) == (2, 1)
        world.service.delete_widget(widget=world.widget)

        gone = world.service.purge_widget(widget=world.widget)

        assert gone == expected
        assert not ChatWidget.objects.filter(pk=world.widget.pk).exists()
        assert _rows(world.widget) == (0, 0, 0, 0)
        assert _rows(world.other_widget) == kept
        # What the chats became in the CRM outlives them.
        assert Lead.objects.filter(pk=lead.pk).exists()
        assert Person.objects.filter(pk=lead.person_id).exists()

    def test_it_counts_deleted_conversations_too(self, world: ChatWorld):
        conv = _chat_with_messages(world, world.widget, "one")
        world.service.delete_conversation(conversation=conv, by=world.owner)
        assert selectors.widget_rows(widget=world.widget).conversations == 1

    def test_it_refuses_a_live_widget_and_deletes_nothing(self, world: ChatWorld):
        _chat_with_messages(world, world.widget, "one")
        before = _rows(world.widget)
        with pytest.raises(NotAllowed, match="Only a deleted widget"):
            world.service.purge_widget(widget=world.widget)
        assert ChatWidget.objects.filter(pk=world.widget.pk).exists()
        assert _rows(world.widget) == before

    def test_it_refuses_a_widget_restored_meanwhile(self, world: ChatWorld):
        world.service.delete_widget(widget=world.widget)
        stale = ChatWidget.objects.get(pk=world.widget.pk)
        world.service.restore_widget(widget=world.widget)
        with pytest.raises(NotAllowed):
            world.service.purge_widget(widget=stale)
        assert ChatWidget.objects.filter(pk=world.widget.pk).exists()
