"""A malformed widget key is just an unknown key: same 404s, never a 500.

Keys are ``[A-Za-z0-9_-]{1,128}``; anything else after ``/p/chat/`` (a dot, ``~``, a
space, NUL, non-ASCII, too long) used to skip the middleware, reach an API view
without a widget on the request and fail with a 500, without any Origin check.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from crm.chat.models import ChatVisitor
from tests.chat.api.conftest import EVIL, SHOP, PublicApi, assert_error
from tests.chat.conftest import ChatWorld

MALFORMED = ["a.b", "a~b", "a%20b", "%00", "%D9%A1%D9%A2", "..", "k" * 129, "k" * 5000]
UNKNOWN = "0" * 64
CONV = "00000000-0000-0000-0000-000000000000"
API_CALLS = [
    ("post", "/visitor"),
    ("patch", "/visitor"),
    ("get", "/visitor"),
    ("post", "/conversations"),
    ("get", f"/conversations/{CONV}/messages"),
    ("post", f"/conversations/{CONV}/messages"),
    ("post", f"/conversations/{CONV}/read"),
    ("post", "/page-views"),
    ("delete", "/page-views"),
    ("get", "/no-such-endpoint"),
]


def _call(client: Client, key: str, method: str, path: str, origin: str | None = None):  # type: ignore[no-untyped-def]
    api = PublicApi(client, key)
    return api.call(method, path, {}, origin=origin, token="some-token")


class MalformedKeyApiTests:
    @pytest.mark.parametrize("key", MALFORMED)
    @pytest.mark.parametrize(("method", "path"), API_CALLS)
    def test_it_answers_exactly_like_an_unknown_key(
        self, world: ChatWorld, client: Client, key: str, method: str, path: str
    ):
        unknown = _call(client, UNKNOWN, method, path)
        malformed = _call(client, key, method, path)
        assert_error(unknown, 404, "unknown_widget")
        assert_error(malformed, 404, "unknown_widget")
        assert malformed.json() == unknown.json()
        assert ChatVisitor.objects.count() == 2

    @pytest.mark.parametrize("key", ["a.b", "k" * 129])
    @pytest.mark.parametrize("origin", [EVIL, SHOP, "null"])
    def test_any_origin_gets_the_same_404_as_for_an_unknown_key(
        self, world: ChatWorld, client: Client, key: str, origin: str
    ):
        unknown = _call(client, UNKNOWN, "post", "/visitor", origin=origin)
        malformed = _call(client, key, "post", "/visitor", origin=origin)
        assert_error(malformed, 404, "unknown_widget")
        assert malformed.json() == unknown.json()
        assert "Access-Control-Allow-Origin" not in malformed

    def test_it_never_looks_a_malformed_key_up(self, world: ChatWorld, client: Client):
        """NUL in a query parameter is an error on PostgreSQL: no query is the safe answer."""
        with CaptureQueriesContext(connection) as queries:
            response = _call(client, "%00", "post", "/visitor")
        assert_error(response, 404, "unknown_widget")
        assert len(queries) == 0


class WrongMethodTests:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("get", "/visitor"), ("put", "/visitor"), ("delete", "/conversations"),
         ("patch", f"/conversations/{CONV}/read"), ("get", "/page-views")],
    )  # fmt: skip
    def test_a_wrong_method_on_a_real_widget_is_a_json_405(
        self, world: ChatWorld, public: PublicApi, method: str, path: str
    ):
        response = public.call(method, path, {}, token=world.token)
        assert_error(response, 405, "method_not_allowed")


class MalformedKeyPageTests:
    @pytest.mark.parametrize("key", MALFORMED)
    def test_the_loader_answers_the_harmless_js_comment(self, world: ChatWorld, key: str):
        response = Client().get(f"/p/chat/{key}.js")
        unknown = Client().get(f"/p/chat/{UNKNOWN}.js")
        assert response.status_code == 404
        assert response["Content-Type"] == unknown["Content-Type"]
        assert response.content == unknown.content

    @pytest.mark.parametrize("key", MALFORMED)
    def test_the_iframe_page_answers_the_friendly_404(self, world: ChatWorld, key: str):
        response = Client().get(f"/p/chat/{key}")
        unknown = Client().get(f"/p/chat/{UNKNOWN}")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")
        assert response.content == unknown.content
        assert response["Content-Security-Policy"] == unknown["Content-Security-Policy"]
