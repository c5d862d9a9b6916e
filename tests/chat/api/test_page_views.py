from __future__ import annotations

import pytest

from crm.chat.models import ChatVisitor, ChatVisitorPageView
from tests.chat.api.conftest import SHOP, PublicApi, assert_error, new_visitor
from tests.chat.conftest import ChatWorld


class RecordPageViewTests:
    def test_it_records_the_page_and_the_visitors_current_url(
        self, world: ChatWorld, public: PublicApi
    ):
        page = {"url": f"{SHOP}/cart", "title": "Cart", "referrer": f"{SHOP}/"}
        response = public.call("post", "/page-views", page, token=world.token, origin=SHOP)
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["recorded"] is True and data["viewed_at"]
        view = ChatVisitorPageView.objects.get()
        assert (view.visitor_id, view.url, view.title, view.referrer) == (
            world.visitor.pk,
            f"{SHOP}/cart",
            "Cart",
            f"{SHOP}/",
        )
        assert ChatVisitor.objects.get(pk=world.visitor.pk).current_url == f"{SHOP}/cart"

    def test_it_collapses_a_repeat_of_the_latest_page(self, world: ChatWorld, public: PublicApi):
        for title in ("A", "A again"):
            public.call(
                "post", "/page-views", {"url": f"{SHOP}/a", "title": title}, token=world.token
            )
        assert list(ChatVisitorPageView.objects.values_list("url", "title")) == [
            (f"{SHOP}/a", "A again")
        ]

    @pytest.mark.parametrize(
        "url",
        ["javascript:alert(1)", "JavaScript:alert(document.cookie)", "data:text/html,<b>x</b>"],
    )
    def test_it_refuses_non_http_urls_with_422(self, world: ChatWorld, public: PublicApi, url: str):
        response = public.call("post", "/page-views", {"url": url}, token=world.token)
        assert "url" in assert_error(response, 422)["fields"]
        assert not ChatVisitorPageView.objects.exists()

    @pytest.mark.parametrize(
        "url",
        [
            "https://evil.example/phish",
            "http://shop.example/",  # same host, other scheme: another origin
            "https://shop.example.evil.example/",
            "https://shop.example@evil.example/",
        ],
    )
    def test_it_refuses_pages_of_sites_the_widget_does_not_allow(
        self, world: ChatWorld, public: PublicApi, url: str
    ):
        response = public.call("post", "/page-views", {"url": url}, token=world.token)
        assert_error(response, 403, "not_allowed")
        assert not ChatVisitorPageView.objects.exists()
        assert ChatVisitor.objects.get(pk=world.visitor.pk).current_url == ""

    def test_it_records_any_http_site_when_the_widget_allows_all(
        self, world: ChatWorld, other_public: PublicApi
    ):
        response = other_public.call(
            "post", "/page-views", {"url": "https://anything.example/x"}, token=world.other_token
        )
        assert response.json()["recorded"] is True
        assert ChatVisitorPageView.objects.get().visitor_id == world.other_visitor.pk

    def test_it_records_nothing_for_an_empty_url(self, world: ChatWorld, public: PublicApi):
        response = public.call("post", "/page-views", {"url": ""}, token=world.token)
        assert response.status_code == 200
        assert response.json() == {"recorded": False, "viewed_at": None}
        assert not ChatVisitorPageView.objects.exists()

    def test_it_refuses_an_over_long_url(self, world: ChatWorld, public: PublicApi):
        url = f"{SHOP}/" + "p" * 5000
        response = public.call("post", "/page-views", {"url": url}, token=world.token)
        assert "url" in assert_error(response, 422)["fields"]
        assert not ChatVisitorPageView.objects.exists()

    def test_it_validates_ownership(self, world: ChatWorld, public: PublicApi):
        intruder, intruder_token = new_visitor(world.widget)
        public.call("post", "/page-views", {"url": f"{SHOP}/x"}, token=intruder_token)
        assert ChatVisitorPageView.objects.get().visitor_id == intruder.pk
        assert not world.visitor.page_views.exists()
