"""Settings → Chat Widgets: list, create, edit, toggle, delete, restore, purge, new key,
permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.chat.forms import COLOR_ERROR
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatWidget
from crm.chat.services import chat_service
from crm.core.models import Team
from crm.core.roles import EMPLOYEE, MANAGER, OWNER
from crm.core.services import create_agent

pytestmark = pytest.mark.django_db

PASSWORD = "not-a-real-secret-1"
INDEX = reverse("crm-chat-widget-index")
CREATE = reverse("crm-chat-widget-create")


def _client(username: str, role: str) -> Client:
    client = Client()
    client.force_login(
        create_agent(username=username, password=PASSWORD, role=role, validate=False)
    )
    return client


@pytest.fixture
def owner_client(db: None) -> Client:
    return _client("olivia", OWNER)


@pytest.fixture
def manager_client(db: None) -> Client:
    return _client("manon", MANAGER)


@pytest.fixture
def employee_client(db: None) -> Client:
    return _client("emma", EMPLOYEE)


@pytest.fixture
def make_widget(db: None) -> Callable[..., ChatWidget]:
    def make(name: str = "Main site", **fields: Any) -> ChatWidget:
        return chat_service.create_widget(name=name, **fields)

    return make


def widget_data(**fields: str) -> dict[str, str]:
    """A valid create/edit POST, with ``fields`` on top."""
    data = {
        "name": "Shop",
        "welcome_message": "Hello! Ask us anything.",
        "color": "#16a34a",
        "position": "bottom-left",
        "allowed_origins": "https://shop.example\nhttp://localhost:3000",
        "team": "",
        "is_active": "on",
        "offline_message": "We're away; we'll email you.",
        "business_hours": "",
        "time_zone": "UTC",
        "missed_chat_minutes": "5",
    }
    data.update(fields)
    return data


def edit_url(widget: ChatWidget) -> str:
    return reverse("crm-chat-widget-edit", args=[widget.external_id])


def flashes(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def start_conversation(widget: ChatWidget) -> ChatConversation:
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None)
    return chat_service.open_conversation(visitor=visitor)


class WidgetListTests:
    def test_it_lists_widgets_with_their_settings_and_conversation_counts(
        self, manager_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        team = Team.objects.create(name="Support EU")
        shop = make_widget(
            "Shop",
            team=team,
            color="#16a34a",
            position="bottom-left",
            allowed_origins=["https://shop.example", "https://www.shop.example"],
        )
        make_widget("Docs", is_active=False)
        start_conversation(shop)
        start_conversation(shop)

        response = manager_client.get(INDEX)

        assert response.status_code == 200
        assert [w.name for w in response.context["widgets"]] == ["Docs", "Shop"]
        html = response.content.decode()
        for text in ("Support EU", "Active", "Inactive", "Bottom left", "#16a34a"):
            assert text in html
        assert 'fill="#16a34a"' in html
        assert "2 origins" in html and "https://www.shop.example" in html
        assert "Any site" in html
        row = html[html.index(">Shop<") :]
        assert "<td>2</td>" in row[: row.index("</tr>")]

    def test_it_shows_an_empty_state_with_a_create_link(self, owner_client: Client) -> None:
        response = owner_client.get(INDEX)
        assert response.status_code == 200
        assert b"No chat widgets yet" in response.content
        assert CREATE.encode() in response.content

    def test_it_uses_the_same_number_of_queries_for_more_widgets(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        team = Team.objects.create(name="Sales")
        make_widget("One", team=team)
        with CaptureQueriesContext(connection) as one:
            owner_client.get(INDEX)
        for name in ("Two", "Three", "Four"):
            start_conversation(make_widget(name, team=team))
        with CaptureQueriesContext(connection) as four:
            owner_client.get(INDEX)
        assert len(four) == len(one)

    def test_it_is_linked_from_the_settings_page(self, owner_client: Client) -> None:
        settings_page = owner_client.get(reverse("crm-settings"))
        assert b'href="/crm/chat-widgets/"' in settings_page.content
        assert INDEX == "/crm/chat-widgets/"
        assert owner_client.get("/crm/chat-widgets/").status_code == 200

    def test_it_escapes_what_users_typed(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget(
            "<script>alert(1)</script>", welcome_message="<img src=x onerror=alert(2)>"
        )
        for url in (INDEX, edit_url(widget)):
            html = owner_client.get(url).content.decode()
            assert "<script>alert(1)</script>" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert "<img src=x" not in html


class WidgetCreateTests:
    def test_it_shows_an_empty_form_with_a_preview_and_no_snippet(
        self, owner_client: Client
    ) -> None:
        response = owner_client.get(CREATE)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'type="color"' in html and 'name="color"' in html
        assert "data-widget-preview" in html and 'data-color="#2563eb"' in html
        assert "Embed snippet" not in html
        assert "crm_chat/settings.js" in html
        assert "<script>" not in html  # no inline script: the page may get a strict CSP

    def test_it_creates_a_widget_through_the_service(self, owner_client: Client) -> None:
        team = Team.objects.create(name="Support EU")
        response = owner_client.post(
            CREATE,
            widget_data(
                color="#16A34A",
                team=str(team.pk),
                allowed_origins="HTTPS://Shop.Example:443/\n\n  http://localhost:3000  \n",
            ),
        )

        widget = ChatWidget.objects.get()
        assert response.status_code == 302
        assert response["Location"] == edit_url(widget)
        assert widget.name == "Shop"
        assert widget.welcome_message == "Hello! Ask us anything."
        assert widget.color == "#16a34a"
        assert widget.position == "bottom-left"
        assert widget.allowed_origins == ["https://shop.example", "http://localhost:3000"]
        assert widget.team == team
        assert widget.is_active is True
        assert len(widget.public_key) == 64
        assert flashes(response) == ["Created Shop. Paste the embed snippet into your site."]

    def test_it_accepts_a_colour_without_the_hash(self, owner_client: Client) -> None:
        owner_client.post(CREATE, widget_data(color=" 0EA5E9 "))
        assert ChatWidget.objects.get().color == "#0ea5e9"

    @pytest.mark.parametrize("color", ["blue", "#12345", "#1234567", "#gggggg", ""])
    def test_it_rejects_an_invalid_colour_and_writes_nothing(
        self, owner_client: Client, color: str
    ) -> None:
        response = owner_client.post(CREATE, widget_data(color=color))
        assert response.status_code == 200
        assert ChatWidget.objects.count() == 0
        errors = response.context["form"].errors["color"]
        assert errors == [COLOR_ERROR if color else "This field is required."]
        assert b"nothing has been saved" in response.content
        # The picker never gets the invalid value (it would turn it into black).
        assert b'type="color" value="#2563eb"' in response.content

    @pytest.mark.parametrize(
        ("line", "why"),
        [
            ("https://*.shop.example", "wildcard"),
            ("https://shop.example/checkout", "path"),
            ("ftp://shop.example", "scheme"),
            ("shop.example", "no scheme"),
        ],
    )
    def test_it_rejects_a_bad_origin_line_and_writes_nothing(
        self, owner_client: Client, line: str, why: str
    ) -> None:
        response = owner_client.post(
            CREATE, widget_data(allowed_origins=f"https://ok.example\n{line}")
        )
        assert response.status_code == 200, why
        assert ChatWidget.objects.count() == 0
        errors = response.context["form"].errors["allowed_origins"]
        assert len(errors) == 1 and line in errors[0]
        assert "is not an exact origin" in errors[0] or "is not a valid origin" in errors[0]
        html = response.content.decode()
        assert "is not an exact origin" in html or "is not a valid origin" in html
        # What was typed is shown again so it can be fixed.
        assert line in response.context["form"]["allowed_origins"].value()

    def test_it_reports_every_bad_origin_line(self, owner_client: Client) -> None:
        response = owner_client.post(
            CREATE, widget_data(allowed_origins="https://*.a.example\nhttps://b.example/x")
        )
        errors = response.context["form"].errors["allowed_origins"]
        assert len(errors) == 2
        assert "https://*.a.example" in errors[0] and "https://b.example/x" in errors[1]

    def test_it_requires_a_name_and_a_known_position(self, owner_client: Client) -> None:
        response = owner_client.post(CREATE, widget_data(name="  ", position="top-left"))
        errors = response.context["form"].errors
        assert set(errors) == {"name", "position"}
        assert ChatWidget.objects.count() == 0


class WidgetEditTests:
    def test_it_shows_the_settings_with_origins_one_per_line(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget(
            allowed_origins=["https://shop.example", "http://localhost:3000"],
            color="#dc2626",
            position="bottom-left",
        )
        response = owner_client.get(edit_url(widget))
        assert response.status_code == 200
        form = response.context["form"]
        assert form["allowed_origins"].value() == "https://shop.example\nhttp://localhost:3000"
        html = response.content.decode()
        assert 'data-color="#dc2626"' in html
        assert "widget-preview is-left" in html

    @override_settings(CRM_PUBLIC_URL="https://crm.example.com/")
    def test_it_shows_the_embed_snippet_with_the_loader_url_and_key(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        html = owner_client.get(edit_url(widget)).content.decode()
        loader = f"https://crm.example.com/p/chat/{widget.public_key}.js"
        assert f"s.src=&#x27;{loader}&#x27;" in html
        assert 'id="embed-snippet"' in html and "readonly" in html
        assert 'data-copy-target="embed-snippet"' in html
        assert widget.public_key in html
        assert reverse("crm-chat-widget-regenerate", args=[widget.external_id]) in html
        assert reverse("crm-chat-widget-delete", args=[widget.external_id]) in html

    def test_it_saves_and_normalises_origins(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget(allowed_origins=["https://old.example"])
        key = widget.public_key
        response = owner_client.post(
            edit_url(widget),
            widget_data(
                name="Renamed",
                allowed_origins="HTTPS://Shop.Example:443/\nhttps://shop.example\nHTTP://[::1]:8080",
                is_active="",
            ),
        )
        assert response.status_code == 302
        assert response["Location"] == edit_url(widget)
        widget.refresh_from_db()
        assert widget.name == "Renamed"
        assert widget.allowed_origins == ["https://shop.example", "http://[::1]:8080"]
        assert widget.is_active is False
        assert widget.public_key == key
        assert flashes(response) == ["Saved Renamed."]

    def test_it_clears_the_origins_and_the_team(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget(
            allowed_origins=["https://shop.example"], team=Team.objects.create(name="T")
        )
        owner_client.post(edit_url(widget), widget_data(allowed_origins="\n \n", team=""))
        widget.refresh_from_db()
        assert widget.allowed_origins == [] and widget.team is None

    def test_it_keeps_the_stored_widget_when_input_is_bad(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget(color="#dc2626")
        response = owner_client.post(
            edit_url(widget),
            widget_data(name="Changed", color="red", allowed_origins="https://x.example/*"),
        )
        assert response.status_code == 200
        assert set(response.context["form"].errors) == {"color", "allowed_origins"}
        assert response.context["heading"] == "Edit Main site"
        stored = ChatWidget.objects.get()
        assert (stored.name, stored.color, stored.allowed_origins) == ("Main site", "#dc2626", [])

    def test_it_answers_404_for_an_unknown_widget(self, owner_client: Client) -> None:
        url = reverse("crm-chat-widget-edit", args=["00000000-0000-0000-0000-000000000000"])
        assert owner_client.get(url).status_code == 404


class WidgetToggleTests:
    def test_it_deactivates_and_activates(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        url = reverse("crm-chat-widget-toggle", args=[widget.external_id])

        response = owner_client.post(url, follow=True)
        assert response.redirect_chain == [(INDEX, 302)]
        assert ChatWidget.objects.get().is_active is False
        assert b"Deactivated Main site." in response.content
        assert b"Inactive" in response.content and b">Activate<" in response.content

        response = owner_client.post(url, follow=True)
        assert ChatWidget.objects.get().is_active is True
        assert b"Activated Main site." in response.content
        assert b"Deactivated Main site." not in response.content

    def test_it_refuses_get(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        url = reverse("crm-chat-widget-toggle", args=[widget.external_id])
        assert owner_client.get(url).status_code == 405
        assert ChatWidget.objects.get().is_active is True


class WidgetDeleteTests:
    def test_it_asks_first_and_says_what_is_kept(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        start_conversation(widget)
        response = owner_client.get(reverse("crm-chat-widget-delete", args=[widget.external_id]))
        assert response.status_code == 200
        html = response.content.decode()
        assert "Delete Main site?" in html
        assert "stops working at once on every site" in html
        assert "Its visitors and 1 conversation are kept" in html
        assert "Deleted widgets" in html and "deleted for good" not in html
        assert ChatWidget.objects.get().deleted_at is None

    def test_it_soft_deletes_and_keeps_the_conversations(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget(offline_message="")
        keep = make_widget("Other")
        conv = start_conversation(widget)
        chat_service.send_visitor_message(conversation=conv, visitor=conv.visitor, body="hi")
        start_conversation(keep)

        response = owner_client.post(reverse("crm-chat-widget-delete", args=[widget.external_id]))

        assert response.status_code == 302 and response["Location"] == INDEX
        assert ChatWidget.objects.get(pk=widget.pk).deleted_at is not None
        assert ChatWidget.objects.get(pk=keep.pk).deleted_at is None
        assert ChatConversation.objects.filter(widget=widget).count() == 1
        assert ChatVisitor.objects.filter(widget=widget).count() == 1
        assert ChatMessage.objects.filter(conversation=conv).count() == 1
        assert flashes(response) == [
            "Deleted Main site. Its conversations stay in the inbox; "
            "restore the widget from Deleted widgets."
        ]

    def test_the_list_shows_deleted_widgets_apart_with_restore_and_purge(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget("Gone <b>site</b>")
        make_widget("Live")
        start_conversation(widget)
        chat_service.delete_widget(widget=widget)

        response = owner_client.get(INDEX)

        assert [w.name for w in response.context["widgets"]] == ["Live"]
        assert [w.name for w in response.context["deleted_widgets"]] == ["Gone <b>site</b>"]
        html = response.content.decode()
        deleted = html[html.index('id="deleted-widgets"') :]
        live = html[: html.index('id="deleted-widgets"')]
        assert "Gone &lt;b&gt;site&lt;/b&gt;" in deleted and "<b>site</b>" not in html
        assert "Gone &lt;b&gt;site" not in live
        assert reverse("crm-chat-widget-restore", args=[widget.external_id]) in deleted
        assert reverse("crm-chat-widget-purge", args=[widget.external_id]) in deleted
        assert "<td>1</td>" in deleted  # its conversation count
        # A deleted widget offers no edit, toggle, new key or second delete.
        for name in ("edit", "toggle", "delete", "regenerate"):
            assert reverse(f"crm-chat-widget-{name}", args=[widget.external_id]) not in html

    def test_only_deleted_widgets_shows_a_hint_instead_of_the_first_run_text(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        chat_service.delete_widget(widget=make_widget())
        html = owner_client.get(INDEX).content.decode()
        assert "No chat widgets yet" not in html
        assert "restore a deleted one below" in html

    @pytest.mark.parametrize("name", ["edit", "toggle", "delete", "regenerate"])
    def test_the_live_widget_pages_answer_404_for_a_deleted_widget(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget], name: str
    ) -> None:
        widget = make_widget()
        chat_service.delete_widget(widget=widget)
        url = reverse(f"crm-chat-widget-{name}", args=[widget.external_id])
        assert owner_client.get(url).status_code in (404, 405)
        assert owner_client.post(url, widget_data(name="Changed")).status_code == 404
        stored = ChatWidget.objects.get()
        assert (stored.name, stored.public_key, stored.is_active) == (
            "Main site",
            widget.public_key,
            True,
        )
        assert stored.deleted_at is not None


class WidgetRestoreTests:
    def test_it_restores_with_the_same_key(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        chat_service.delete_widget(widget=widget)
        url = reverse("crm-chat-widget-restore", args=[widget.external_id])

        response = owner_client.post(url, follow=True)

        assert response.redirect_chain == [(INDEX, 302)]
        stored = ChatWidget.objects.get()
        assert stored.deleted_at is None and stored.public_key == widget.public_key
        assert b"Restored Main site. Its embed snippet works again." in response.content
        assert Client().get(f"/p/chat/{widget.public_key}.js").status_code == 200

    def test_it_refuses_get_and_a_live_widget(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        url = reverse("crm-chat-widget-restore", args=[widget.external_id])
        assert owner_client.post(url).status_code == 404
        chat_service.delete_widget(widget=widget)
        assert owner_client.get(url).status_code == 405
        assert ChatWidget.objects.get().deleted_at is not None


class WidgetPurgeTests:
    @pytest.fixture
    def deleted(self, make_widget: Callable[..., ChatWidget]) -> ChatWidget:
        # Without the offline auto-reply, so the messages are exactly these three.
        widget = make_widget("Old shop", offline_message="")
        for body in ("one", "two"):
            conv = start_conversation(widget)
            chat_service.send_visitor_message(conversation=conv, visitor=conv.visitor, body=body)
        chat_service.send_visitor_message(conversation=conv, visitor=conv.visitor, body="three")
        chat_service.delete_widget(widget=widget)
        return widget

    @staticmethod
    def url(widget: ChatWidget) -> str:
        return reverse("crm-chat-widget-purge", args=[widget.external_id])

    def test_it_shows_what_will_be_destroyed_and_asks_for_the_name(
        self, owner_client: Client, deleted: ChatWidget
    ) -> None:
        response = owner_client.get(self.url(deleted))
        assert response.status_code == 200
        html = response.content.decode()
        assert "Permanently delete Old shop?" in html
        counts = html[html.index('id="purge-counts"') :]
        assert "<strong>2</strong> conversations" in counts
        assert "<strong>3</strong> messages" in counts
        assert "<strong>2</strong> visitors" in counts
        assert 'name="name"' in html and "Type the widget&#x27;s name to confirm" in html
        assert ChatWidget.objects.filter(pk=deleted.pk).exists()

    @pytest.mark.parametrize("typed", ["", "old shop", "Old shop!", "Main site"])
    def test_a_wrong_name_is_a_form_error_and_deletes_nothing(
        self, owner_client: Client, deleted: ChatWidget, typed: str
    ) -> None:
        response = owner_client.post(self.url(deleted), {"name": typed})
        assert response.status_code == 200
        errors = response.context["form"].errors["name"]
        assert errors == (
            ["This field is required."]
            if not typed
            else ["That is not the name of this widget; nothing was deleted. Type it exactly."]
        )
        assert errors[0].replace("'", "&#x27;") in response.content.decode()
        assert ChatWidget.objects.filter(pk=deleted.pk).exists()
        assert ChatConversation.objects.filter(widget=deleted).count() == 2
        assert ChatMessage.objects.filter(conversation__widget=deleted).count() == 3

    def test_the_right_name_destroys_exactly_that_widget(
        self, owner_client: Client, deleted: ChatWidget, make_widget: Callable[..., ChatWidget]
    ) -> None:
        other = make_widget("Other", offline_message="")
        kept = start_conversation(other)
        chat_service.send_visitor_message(conversation=kept, visitor=kept.visitor, body="stay")

        response = owner_client.post(self.url(deleted), {"name": "  Old shop "}, follow=True)

        assert response.redirect_chain == [(INDEX, 302)]
        assert b"Permanently deleted Old shop with 2 conversations and 3 messages." in (
            response.content
        )
        assert list(ChatWidget.objects.all()) == [other]
        assert list(ChatConversation.objects.all()) == [kept]
        assert list(ChatMessage.objects.values_list("body", flat=True)) == ["stay"]
        assert list(ChatVisitor.objects.all()) == [kept.visitor]

    def test_it_answers_404_for_a_live_widget(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        assert owner_client.get(self.url(widget)).status_code == 404
        assert owner_client.post(self.url(widget), {"name": "Main site"}).status_code == 404
        assert ChatWidget.objects.filter(pk=widget.pk).exists()

    def test_it_escapes_the_name(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget("<img src=x onerror=alert(1)>")
        chat_service.delete_widget(widget=widget)
        html = owner_client.get(self.url(widget)).content.decode()
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


class DeletedWidgetPermissionTests:
    """Restore and purge: the widget permission, like every settings page."""

    @pytest.fixture
    def deleted(self, make_widget: Callable[..., ChatWidget]) -> ChatWidget:
        widget = make_widget()
        start_conversation(widget)
        return chat_service.delete_widget(widget=widget)

    @staticmethod
    def calls(widget: ChatWidget) -> list[tuple[str, str, dict[str, str]]]:
        restore = reverse("crm-chat-widget-restore", args=[widget.external_id])
        purge = reverse("crm-chat-widget-purge", args=[widget.external_id])
        return [
            ("post", restore, {}),
            ("get", purge, {}),
            ("post", purge, {"name": widget.name}),
        ]

    def assert_unchanged(self, widget: ChatWidget) -> None:
        stored = ChatWidget.objects.get(pk=widget.pk)
        assert stored.deleted_at == widget.deleted_at
        assert ChatConversation.objects.filter(widget=widget).count() == 1

    def test_it_forbids_an_employee(self, employee_client: Client, deleted: ChatWidget) -> None:
        for method, url, data in self.calls(deleted):
            assert getattr(employee_client, method)(url, data).status_code == 403, url
        self.assert_unchanged(deleted)

    def test_it_sends_anonymous_visitors_to_login(
        self, client: Client, deleted: ChatWidget
    ) -> None:
        for method, url, data in self.calls(deleted):
            response = getattr(client, method)(url, data)
            assert response.status_code == 302, url
            assert response["Location"].startswith(f"{reverse('login')}?next="), url
        self.assert_unchanged(deleted)

    def test_it_lets_a_manager_restore_and_purge(
        self, manager_client: Client, deleted: ChatWidget
    ) -> None:
        (_, restore, _), (_, purge, _), _ = self.calls(deleted)
        assert manager_client.get(purge).status_code == 200
        assert manager_client.post(restore).status_code == 302
        chat_service.delete_widget(widget=deleted)
        assert manager_client.post(purge, {"name": deleted.name}).status_code == 302
        assert not ChatWidget.objects.filter(pk=deleted.pk).exists()

    def test_it_answers_404_when_the_chat_module_is_disabled(
        self, owner_client: Client, deleted: ChatWidget
    ) -> None:
        with override_settings(CRM_MODULES=[]):
            for method, url, data in self.calls(deleted):
                assert getattr(owner_client, method)(url, data).status_code == 404, url
        self.assert_unchanged(deleted)


class WidgetRegenerateKeyTests:
    def test_it_asks_first_and_keeps_the_key(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        url = reverse("crm-chat-widget-regenerate", args=[widget.external_id])
        response = owner_client.get(url)
        assert response.status_code == 200
        assert b"stops working" in response.content
        assert ChatWidget.objects.get().public_key == widget.public_key

    def test_it_issues_a_new_key_and_shows_it_in_the_snippet(
        self, owner_client: Client, make_widget: Callable[..., ChatWidget]
    ) -> None:
        widget = make_widget()
        old = widget.public_key
        response = owner_client.post(
            reverse("crm-chat-widget-regenerate", args=[widget.external_id]), follow=True
        )
        new = ChatWidget.objects.get().public_key
        assert new != old and len(new) == 64
        assert response.redirect_chain == [(edit_url(widget), 302)]
        html = response.content.decode()
        assert f"/p/chat/{new}.js" in html and old not in html
        assert "Issued a new public key for Main site." in html


class WidgetPermissionTests:
    @pytest.fixture
    def widget(self, make_widget: Callable[..., ChatWidget]) -> ChatWidget:
        return make_widget()

    @staticmethod
    def urls(widget: ChatWidget) -> list[tuple[str, str]]:
        uid = widget.external_id
        return [
            ("get", INDEX),
            ("get", CREATE),
            ("post", CREATE),
            ("get", edit_url(widget)),
            ("post", edit_url(widget)),
            ("post", reverse("crm-chat-widget-toggle", args=[uid])),
            ("get", reverse("crm-chat-widget-delete", args=[uid])),
            ("post", reverse("crm-chat-widget-delete", args=[uid])),
            ("get", reverse("crm-chat-widget-regenerate", args=[uid])),
            ("post", reverse("crm-chat-widget-regenerate", args=[uid])),
        ]

    def assert_unchanged(self, widget: ChatWidget) -> None:
        stored = ChatWidget.objects.get()
        assert (stored.name, stored.is_active, stored.public_key) == (
            widget.name,
            widget.is_active,
            widget.public_key,
        )

    def test_it_sends_anonymous_visitors_to_login(self, client: Client, widget: ChatWidget) -> None:
        for method, url in self.urls(widget):
            response = getattr(client, method)(url, widget_data() if method == "post" else None)
            assert response.status_code == 302, url
            assert response["Location"].startswith(f"{reverse('login')}?next="), url
        self.assert_unchanged(widget)

    def test_it_forbids_an_employee(self, employee_client: Client, widget: ChatWidget) -> None:
        for method, url in self.urls(widget):
            response = getattr(employee_client, method)(
                url, widget_data() if method == "post" else None
            )
            assert response.status_code == 403, url
        self.assert_unchanged(widget)

    def test_it_hides_the_settings_link_from_an_employee(self, employee_client: Client) -> None:
        assert INDEX.encode() not in employee_client.get(reverse("crm-settings")).content

    @pytest.mark.parametrize("who", ["manager_client", "owner_client"])
    def test_it_lets_managers_and_owners_in(
        self, request: pytest.FixtureRequest, who: str, widget: ChatWidget
    ) -> None:
        client: Client = request.getfixturevalue(who)
        for method, url in self.urls(widget):
            if method == "get":
                assert client.get(url).status_code == 200, url

    def test_it_answers_404_when_the_chat_module_is_disabled(
        self, owner_client: Client, widget: ChatWidget
    ) -> None:
        with override_settings(CRM_MODULES=[]):
            for method, url in self.urls(widget):
                response = getattr(owner_client, method)(
                    url, widget_data() if method == "post" else None
                )
                assert response.status_code == 404, url
            assert INDEX.encode() not in owner_client.get(reverse("crm-settings")).content
        self.assert_unchanged(widget)


class BusinessHoursFormTests:
    def test_it_saves_hours_in_the_widgets_time_zone(self, owner_client, make_widget):
        widget = make_widget()
        response = owner_client.post(
            edit_url(widget),
            widget_data(business_hours="Mon 9:00-12:30 13:30-17:00\nfri 10:00-16:00",
                        time_zone="Europe/Berlin"),
        )  # fmt: skip
        assert response.status_code == 302
        widget.refresh_from_db()
        assert widget.business_hours == {
            "mon": [["09:00", "12:30"], ["13:30", "17:00"]], "fri": [["10:00", "16:00"]],
        }  # fmt: skip
        assert widget.time_zone == "Europe/Berlin"
        page = owner_client.get(edit_url(widget)).content.decode()
        assert "mon 09:00-12:30 13:30-17:00" in page

    @pytest.mark.parametrize("hours", ["someday 09:00-17:00", "mon 17:00-09:00", "tue 9-5", "wed"])
    def test_it_explains_bad_hours_and_saves_nothing(self, owner_client, make_widget, hours):
        widget = make_widget()
        response = owner_client.post(edit_url(widget), widget_data(business_hours=hours))
        assert response.status_code == 200
        assert "business_hours" in response.context["form"].errors
        widget.refresh_from_db()
        assert widget.business_hours == {}
