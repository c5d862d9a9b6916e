"""Every refusal of the public API has the one JSON shape and the right status."""

from __future__ import annotations

import uuid

import pytest

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatVisitorPageView
from crm.chat.services import chat_service
from tests.chat.api.conftest import PublicApi, assert_error
from tests.chat.conftest import ChatWorld

CONV = "{conv}"
# (method, path, a valid body) of every operation; {conv} is the visitor's conversation.
OPERATIONS = {
    "identify": ("post", "/visitor", {}),
    "update_visitor": ("patch", "/visitor", {"name": "Ann"}),
    "open_conversation": ("post", "/conversations", {}),
    "list_messages": ("get", f"/conversations/{CONV}/messages", None),
    "send_message": ("post", f"/conversations/{CONV}/messages", {"body": "hi"}),
    "mark_read": ("post", f"/conversations/{CONV}/read", {}),
    "record_page_view": ("post", "/page-views", {"url": "https://shop.example/"}),
}
WITH_BODY = [name for name, (_, _, body) in OPERATIONS.items() if body is not None]
NEEDS_TOKEN = [name for name in OPERATIONS if name != "identify"]
# A value of the wrong JSON type for one field of each operation with a body.
WRONG_TYPES = {
    "identify": {"page": "https://shop.example/"},
    "update_visitor": {"name": 123},
    "open_conversation": {"subject": ["a"]},
    "send_message": {"body": 5},
    "mark_read": {"up_to_seq": "all"},
    "record_page_view": {"url": {"href": "https://shop.example/"}},
}


def _path(world: ChatWorld, name: str) -> str:
    path = OPERATIONS[name][1]
    if CONV in path:
        path = path.replace(CONV, str(world.conversation().external_id))
    return path


def _nothing_written(world: ChatWorld) -> None:
    assert ChatVisitor.objects.count() == 2
    assert not ChatMessage.objects.exists()
    assert ChatConversation.objects.count() <= 1  # at most the one _path() opened


class ErrorShapeTests:
    @pytest.mark.parametrize("name", WITH_BODY)
    @pytest.mark.parametrize("raw", ['{"body": ', "not json at all", "{'single': 'quotes'}"])
    def test_it_answers_malformed_json_with_a_4xx(
        self, world: ChatWorld, public: PublicApi, name: str, raw: str
    ):
        method, _, _ = OPERATIONS[name]
        response = public.call(method, _path(world, name), raw=raw, token=world.token)
        assert 400 <= response.status_code < 500
        assert_error(response, response.status_code)
        _nothing_written(world)

    @pytest.mark.parametrize("name", WITH_BODY)
    def test_it_answers_a_json_array_body_with_422(
        self, world: ChatWorld, public: PublicApi, name: str
    ):
        method, _, _ = OPERATIONS[name]
        response = public.call(method, _path(world, name), [1, 2], token=world.token)
        assert_error(response, 422, "invalid_request")
        _nothing_written(world)

    @pytest.mark.parametrize("name", WRONG_TYPES)
    def test_it_answers_wrong_types_with_422_naming_the_field(
        self, world: ChatWorld, public: PublicApi, name: str
    ):
        method, _, _ = OPERATIONS[name]
        body = WRONG_TYPES[name]
        response = public.call(method, _path(world, name), body, token=world.token)
        error = assert_error(response, 422, "invalid_request")
        (field,) = body
        assert any(key.split(".")[0] == field for key in error["fields"]), error
        _nothing_written(world)

    @pytest.mark.parametrize("name", WITH_BODY)
    def test_it_answers_unknown_keys_with_422(self, world: ChatWorld, public: PublicApi, name: str):
        method, _, body = OPERATIONS[name]
        response = public.call(
            method, _path(world, name), {**body, "is_admin": True}, token=world.token
        )
        error = assert_error(response, 422, "invalid_request")
        assert "is_admin" in error["fields"], error
        _nothing_written(world)

    def test_it_answers_unknown_nested_keys_with_422(self, world: ChatWorld, public: PublicApi):
        response = public.identify({"page": {"url": "https://shop.example/", "x": 1}})
        assert "page.x" in assert_error(response, 422, "invalid_request")["fields"]
        _nothing_written(world)

    @pytest.mark.parametrize("name", NEEDS_TOKEN)
    def test_it_answers_a_missing_token_with_401(
        self, world: ChatWorld, public: PublicApi, name: str
    ):
        method, _, body = OPERATIONS[name]
        response = public.call(method, _path(world, name), body)
        error = assert_error(response, 401, "missing_token")
        assert "X-Chat-Visitor-Token" in error["message"]

    @pytest.mark.parametrize("name", OPERATIONS)
    @pytest.mark.parametrize(
        "token", ["forged-" + "a" * 57, "x", "é" * 10, "t" * 500], ids=["64", "1", "utf8", "500"]
    )
    def test_it_answers_a_forged_token_with_401(
        self, world: ChatWorld, public: PublicApi, name: str, token: str
    ):
        method, _, body = OPERATIONS[name]
        response = public.call(method, _path(world, name), body, token=token)
        assert_error(response, 401, "invalid_token")
        _nothing_written(world)

    def test_it_does_not_read_the_token_from_the_query_string(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.call("patch", f"/visitor?visitor_token={world.token}", {"name": "A"})
        assert_error(response, 401, "missing_token")

    @pytest.mark.parametrize("name", OPERATIONS)
    def test_it_answers_an_unknown_widget_key_with_404(
        self, world: ChatWorld, public: PublicApi, name: str
    ):
        method, _, body = OPERATIONS[name]
        path = _path(world, name)
        for key in ("0" * 64, "nope", "k" * 100):
            response = PublicApi(public.client, key).call(method, path, body, token=world.token)
            assert_error(response, 404, "unknown_widget")
        _nothing_written(world)

    @pytest.mark.parametrize("name", OPERATIONS)
    def test_it_answers_an_inactive_widget_with_404(
        self, world: ChatWorld, public: PublicApi, name: str
    ):
        method, _, body = OPERATIONS[name]
        path = _path(world, name)
        chat_service.update_widget(widget=world.widget, is_active=False)
        response = public.call(method, path, body, token=world.token)
        assert_error(response, 404, "unknown_widget")
        _nothing_written(world)

    def test_it_answers_an_unknown_api_path_with_json_404(
        self, world: ChatWorld, public: PublicApi
    ):
        assert_error(public.call("get", "/admin", token=world.token), 404, "not_found")
        assert_error(public.call("post", "/visitors", {}, token=world.token), 404, "not_found")

    def test_it_answers_a_wrong_method_with_json_405(self, world: ChatWorld, public: PublicApi):
        response = public.call("delete", "/visitor", token=world.token)
        assert_error(response, 405, "method_not_allowed")
        assert set(response["Allow"].replace(" ", "").split(",")) == {"PATCH", "POST"}

    def test_it_answers_a_malformed_conversation_id_with_422(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.call("get", "/conversations/not-a-uuid/messages", token=world.token)
        assert "conversation_id" in assert_error(response, 422, "invalid_request")["fields"]

    def test_it_answers_an_unknown_conversation_id_with_404(
        self, world: ChatWorld, public: PublicApi
    ):
        for path in ("messages", "read"):
            method = "get" if path == "messages" else "post"
            response = public.call(
                method, f"/conversations/{uuid.uuid4()}/{path}", {}, token=world.token
            )
            assert_error(response, 404, "not_found")


# One string field of each operation, carrying a character no database column should get.
NUL_FIELDS = [
    ("identify", {"page": {"url": "https://shop.example/a\x00b"}}, "page.url"),
    ("update_visitor", {"name": "Ann\x00"}, "name"),
    ("update_visitor", {"email": "a\x00@x.io"}, "email"),
    ("open_conversation", {"subject": "Help\x00"}, "subject"),
    ("send_message", {"body": "a\x00b"}, "body"),
    ("send_message", {"body": "ok", "client_id": "c\x00"}, "client_id"),
    ("record_page_view", {"url": "https://shop.example/\x00"}, "url"),
    ("record_page_view", {"url": "https://shop.example/", "title": "T\x00"}, "title"),
    (
        "record_page_view",
        {"url": "https://shop.example/", "referrer": "https://a.example/\x00"},
        "referrer",
    ),
]


class InputHardeningTests:
    """Inputs that used to crash a write (500) on PostgreSQL or in urlsplit are 422s."""

    @pytest.mark.parametrize(
        ("name", "body", "field"), NUL_FIELDS, ids=[f"{n}-{f}" for n, _, f in NUL_FIELDS]
    )
    def test_it_refuses_nul_characters_in_any_string(
        self, world: ChatWorld, public: PublicApi, name: str, body: dict, field: str
    ):
        method = OPERATIONS[name][0]
        path = _path(world, name)  # opens a conversation only for send_message
        response = public.call(
            method, path, body, token=None if name == "identify" else world.token
        )
        assert field in assert_error(response, 422, "invalid_request")["fields"]
        assert ChatVisitor.objects.count() == 2
        assert not ChatMessage.objects.exists() and not ChatVisitorPageView.objects.exists()
        assert ChatConversation.objects.count() <= 1
        assert not ChatVisitor.objects.filter(name__contains="Ann").exists()

    def test_it_refuses_lone_surrogates(self, world: ChatWorld, public: PublicApi):
        path = _path(world, "send_message")
        response = public.call("post", path, raw='{"body": "\\ud800"}', token=world.token)
        assert "body" in assert_error(response, 422)["fields"]
        assert not ChatMessage.objects.exists()

    @pytest.mark.parametrize(
        "url", ["https://[::1/x", "http://[::1", "https://shop.example:99999/"]
    )
    def test_it_refuses_urls_that_do_not_parse(self, world: ChatWorld, public: PublicApi, url: str):
        response = public.call("post", "/page-views", {"url": url}, token=world.token)
        assert 400 <= response.status_code < 500
        assert_error(response, response.status_code)
        assert not ChatVisitorPageView.objects.exists()

    def test_it_drops_a_referrer_that_does_not_parse(self, world: ChatWorld, public: PublicApi):
        page = {"url": "https://shop.example/x", "referrer": "https://[::1/"}
        response = public.call("post", "/page-views", page, token=world.token)
        assert response.status_code == 200
        assert ChatVisitorPageView.objects.get().referrer == ""
