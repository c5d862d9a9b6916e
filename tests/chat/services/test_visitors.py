from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from crm.chat.models import ChatVisitor, ChatVisitorPageView, hash_token
from crm.chat.services import InvalidToken, NotAllowed
from tests.chat.conftest import ChatWorld


class IdentifyVisitorTests:
    def test_it_creates_a_visitor_with_a_64_char_token_stored_hashed(self, world: ChatWorld):
        visitor, token = world.service.identify_visitor(
            widget=world.widget, token=None, ip_address="81.2.69.142", user_agent="UA/1"
        )
        assert token is not None and len(token) == 64
        stored = ChatVisitor.objects.get(pk=visitor.pk)
        assert stored.visitor_token == hash_token(token) != token
        assert stored.country_code == "GB"
        assert stored.user_agent == "UA/1"
        assert stored.last_seen_at is not None

    def test_it_finds_the_visitor_again_by_token(self, world: ChatWorld):
        again, new_token = world.service.identify_visitor(widget=world.widget, token=world.token)
        assert again.pk == world.visitor.pk and new_token is None
        assert ChatVisitor.objects.count() == 2

    def test_it_refuses_a_token_of_another_widget(self, world: ChatWorld):
        with pytest.raises(InvalidToken):
            world.service.identify_visitor(widget=world.widget, token=world.other_token)
        assert ChatVisitor.objects.count() == 2

    def test_it_refuses_an_unknown_token(self, world: ChatWorld):
        with pytest.raises(InvalidToken):
            world.service.identify_visitor(widget=world.widget, token="x" * 64)

    def test_it_updates_name_and_email_and_keeps_old_values_for_blanks(self, world: ChatWorld):
        world.service.update_visitor_details(visitor=world.visitor, name=" Ann ", email="A@X.io")
        world.service.update_visitor_details(visitor=world.visitor, name="", email=None)
        stored = ChatVisitor.objects.get(pk=world.visitor.pk)
        assert (stored.name, stored.email) == ("Ann", "a@x.io")

    @pytest.mark.parametrize(
        ("name", "email", "field"),
        [("A" * 256, "", "name"), ("Ann", "not-an-email", "email"), ("Bad\x00", "", "name")],
    )
    def test_it_rejects_bad_details_and_writes_nothing(self, world, name, email, field):
        with pytest.raises(ValidationError) as exc:
            world.service.update_visitor_details(visitor=world.visitor, name=name, email=email)
        assert field in exc.value.message_dict
        stored = ChatVisitor.objects.get(pk=world.visitor.pk)
        assert (stored.name, stored.email) == ("", "")


class RecordPageViewTests:
    def test_it_appends_views_and_collapses_a_repeat_of_the_latest(self, world: ChatWorld):
        s = world.service
        s.record_page_view(visitor=world.visitor, url="https://shop.example/a", title="A")
        s.record_page_view(visitor=world.visitor, url="https://shop.example/b", title="B")
        s.record_page_view(visitor=world.visitor, url="https://shop.example/b", title="B2")
        trail = list(ChatVisitorPageView.objects.order_by("id").values_list("url", "title"))
        assert trail == [("https://shop.example/a", "A"), ("https://shop.example/b", "B2")]
        assert ChatVisitor.objects.get(pk=world.visitor.pk).current_url == "https://shop.example/b"

    @pytest.mark.parametrize(
        "url",
        [
            "javascript:alert(1)",
            "data:text/html,x",
            "https://shop.example/\nSet-Cookie",
            "h" * 3000,
        ],
    )
    def test_it_refuses_non_http_or_oversized_urls(self, world: ChatWorld, url: str):
        with pytest.raises(ValidationError):
            world.service.record_page_view(visitor=world.visitor, url=url)
        assert not ChatVisitorPageView.objects.exists()

    def test_it_refuses_a_page_of_a_site_the_widget_does_not_allow(self, world: ChatWorld):
        with pytest.raises(NotAllowed):
            world.service.record_page_view(visitor=world.visitor, url="https://evil.example/x")
        assert not ChatVisitorPageView.objects.exists()
        # A widget open to any site takes any http(s) page.
        view = world.service.record_page_view(
            visitor=world.other_visitor, url="https://evil.example/x"
        )
        assert view is not None

    def test_it_caps_the_title_and_ignores_a_bad_referrer(self, world: ChatWorld):
        view = world.service.record_page_view(
            visitor=world.visitor,
            url="https://shop.example/",
            title="t" * 600,
            referrer="javascript:x",
        )
        assert view is not None and len(view.title) == 512 and view.referrer == ""
