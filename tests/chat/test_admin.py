"""The Django admin never hard-deletes a chat widget, and leaves deleted ones alone."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from crm.chat.models import ChatConversation, ChatWidget
from tests.chat.conftest import ChatWorld

pytestmark = pytest.mark.django_db

LIST = "/admin/crm_chat/chatwidget/"


@pytest.fixture
def admin_client(world: ChatWorld) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.org", "x"))
    return client


def _change(widget: ChatWidget) -> str:
    return f"{LIST}{widget.pk}/change/"


class WidgetAdminTests:
    def test_it_offers_no_delete_at_all(self, world: ChatWorld, admin_client: Client) -> None:
        world.conversation()
        page = admin_client.get(LIST).content.decode()
        assert "delete_selected" not in page
        assert (
            f"{LIST}{world.widget.pk}/delete/"
            not in admin_client.get(_change(world.widget)).content.decode()
        )

        assert admin_client.get(f"{LIST}{world.widget.pk}/delete/").status_code == 403
        assert (
            admin_client.post(f"{LIST}{world.widget.pk}/delete/", {"post": "yes"}).status_code
            == 403
        )
        bulk = admin_client.post(
            LIST,
            {"action": "delete_selected", "_selected_action": [world.widget.pk], "post": "yes"},
        )
        assert bulk.status_code in (200, 302)
        assert ChatWidget.objects.filter(pk=world.widget.pk, deleted_at__isnull=True).exists()
        assert ChatConversation.objects.filter(widget=world.widget).count() == 1

    def test_it_lists_and_filters_deleted_widgets(
        self, world: ChatWorld, admin_client: Client
    ) -> None:
        world.service.delete_widget(widget=world.widget)
        deleted = admin_client.get(LIST, {"deleted": "yes"})
        assert [w.pk for w in deleted.context["cl"].result_list] == [world.widget.pk]
        live = admin_client.get(LIST, {"deleted": "no"})
        assert [w.pk for w in live.context["cl"].result_list] == [world.other_widget.pk]

    def test_a_deleted_widget_is_read_only(self, world: ChatWorld, admin_client: Client) -> None:
        world.service.delete_widget(widget=world.widget)
        page = admin_client.get(_change(world.widget))
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        form = {"name": "Revived", "color": "#2563eb", "position": "bottom-right"}
        response = admin_client.post(_change(world.widget), {**form, "allowed_origins": "[]"})
        assert response.status_code == 403
        stored = ChatWidget.objects.get(pk=world.widget.pk)
        assert stored.name == "Main site" and stored.deleted_at is not None

    def test_a_live_widget_is_saved_through_the_service(
        self, world: ChatWorld, admin_client: Client
    ) -> None:
        key = world.widget.public_key
        form = {"name": "Renamed", "color": "#16a34a", "position": "bottom-left", "is_active": "on"}
        origins = '["https://shop.example"]'
        response = admin_client.post(_change(world.widget), {**form, "allowed_origins": origins})
        assert response.status_code == 302, response.content.decode()[:2000]
        stored = ChatWidget.objects.get(pk=world.widget.pk)
        assert (stored.name, stored.color, stored.public_key) == ("Renamed", "#16a34a", key)
