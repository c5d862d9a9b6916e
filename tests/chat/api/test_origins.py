from __future__ import annotations

import pytest
from django.test import Client

from crm.chat.models import ChatVisitor
from tests.chat.api.conftest import EVIL, SHOP, PublicApi, assert_error
from tests.chat.conftest import ChatWorld


def _vary(response) -> set[str]:  # type: ignore[no-untyped-def]
    return {v.strip().lower() for v in response.get("Vary", "").split(",") if v.strip()}


class OriginCheckTests:
    def test_it_answers_an_allowed_origin_with_cors_headers_naming_it(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.identify(token=world.token, origin=SHOP)
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == SHOP
        assert "origin" in _vary(response)
        assert response["Cache-Control"] == "no-store"
        assert "Access-Control-Allow-Credentials" not in response  # no cookies involved

    @pytest.mark.parametrize(
        "origin",
        [
            EVIL,
            "http://shop.example",  # same host, other scheme
            "https://shop.example:8443",  # same host, other port
            "https://shop.example.evil.example",
            "https://sub.shop.example",
            "null",  # sandboxed frames and file:// pages
            "not an origin",
        ],
    )
    def test_it_refuses_a_disallowed_origin_with_403_and_writes_nothing(
        self, world: ChatWorld, public: PublicApi, origin: str
    ):
        response = public.identify(origin=origin)
        assert_error(response, 403, "origin_not_allowed")
        assert "Access-Control-Allow-Origin" not in response
        assert "origin" in _vary(response)
        assert ChatVisitor.objects.count() == 2

    def test_it_refuses_a_disallowed_origin_even_with_a_valid_token(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.call("patch", "/visitor", {"name": "Eve"}, token=world.token, origin=EVIL)
        assert_error(response, 403, "origin_not_allowed")
        assert ChatVisitor.objects.get(pk=world.visitor.pk).name == ""

    def test_it_answers_a_preflight_from_an_allowed_origin_with_204(self, public: PublicApi):
        response = public.client.options(
            public.url("/visitor"),
            headers={
                "Origin": SHOP,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "content-type, x-chat-visitor-token",
            },
        )
        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == SHOP
        methods = {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")}
        assert {"GET", "POST", "PATCH"} <= methods
        headers = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
        assert {"content-type", "x-chat-visitor-token"} <= headers
        assert int(response["Access-Control-Max-Age"]) > 0
        assert "origin" in _vary(response)
        assert response.content == b""

    def test_it_refuses_a_preflight_from_a_disallowed_origin(self, public: PublicApi):
        response = public.client.options(
            public.url("/visitor"),
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        )
        assert_error(response, 403, "origin_not_allowed")
        assert "Access-Control-Allow-Origin" not in response

    def test_it_allows_requests_without_an_origin_header(self, world: ChatWorld, public: PublicApi):
        response = public.identify(token=world.token)
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response

    @pytest.mark.parametrize("origin", [EVIL, "https://anything.example:8080", "null"])
    def test_it_allows_any_origin_when_the_widget_lists_none(
        self, world: ChatWorld, other_public: PublicApi, origin: str
    ):
        assert world.other_widget.allowed_origins == []
        response = other_public.identify(token=world.other_token, origin=origin)
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == origin

    def test_it_always_allows_the_crms_own_origin(self, world: ChatWorld, public: PublicApi):
        # The iframe is served by the CRM: its calls carry the CRM's origin.
        response = public.identify(token=world.token, origin="http://testserver")
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response  # same origin: no CORS needed

    def test_it_allows_the_configured_public_url(
        self, world: ChatWorld, public: PublicApi, settings
    ):  # type: ignore[no-untyped-def]
        settings.CRM_PUBLIC_URL = "https://crm.example/"
        response = public.identify(token=world.token, origin="https://crm.example")
        assert response.status_code == 200

    def test_it_adds_cors_headers_to_errors_so_the_caller_can_read_them(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.call("patch", "/visitor", {"name": "A"}, origin=SHOP)
        assert_error(response, 401, "missing_token")
        assert response["Access-Control-Allow-Origin"] == SHOP

    def test_it_leaves_the_crm_pages_without_cors_headers(self, world: ChatWorld):
        response = Client().get("/login/", headers={"Origin": SHOP})
        assert "Access-Control-Allow-Origin" not in response
