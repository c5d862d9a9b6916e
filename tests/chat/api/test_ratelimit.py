"""Abuse limits, through the real cache (a per-test cleared local-memory cache).

Windows are an hour long so a test never straddles a fixed-window boundary.
"""

from __future__ import annotations

from django.test import Client

from crm.chat import ratelimit
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatVisitorPageView
from tests.chat.api.conftest import SHOP, PublicApi, assert_error, new_visitor, rate_limits
from tests.chat.conftest import ChatWorld

HOUR = 3600


def _assert_limited(response, window: int = HOUR) -> dict:  # type: ignore[no-untyped-def]
    error = assert_error(response, 429, "rate_limited")
    retry_after = response["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= window, retry_after
    # Friendly: says what to do and when, without jargon like "429" or "rate limit".
    assert f"wait {retry_after} second" in error["message"]
    assert "try again" in error["message"]
    return error


class SendMessageLimitTests:
    def test_it_refuses_the_message_over_the_limit_with_429_and_writes_nothing(
        self, world: ChatWorld, public: PublicApi, settings
    ):
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(3, HOUR))
        conv = world.conversation()
        path = public.messages_path(conv)
        for i in range(3):
            response = public.call("post", path, {"body": f"m{i}"}, token=world.token)
            assert response.status_code == 201, response.content
        refused = public.call(
            "post", path, {"body": "one too many", "client_id": "c-x"}, token=world.token
        )
        error = _assert_limited(refused)
        assert "messages" in error["message"]
        assert list(ChatMessage.objects.order_by("seq").values_list("body", flat=True)) == [
            "m0",
            "m1",
            "m2",
        ]
        conv.refresh_from_db()
        assert conv.last_seq == 3

    def test_it_counts_per_visitor_token(self, world: ChatWorld, public: PublicApi, settings):  # type: ignore[no-untyped-def]
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(1, HOUR))
        mine = world.conversation()
        other, other_token = new_visitor(world.widget)
        theirs = world.conversation(other)
        first = public.call("post", public.messages_path(mine), {"body": "a"}, token=world.token)
        assert first.status_code == 201
        _assert_limited(
            public.call("post", public.messages_path(mine), {"body": "b"}, token=world.token)
        )
        ok = public.call("post", public.messages_path(theirs), {"body": "c"}, token=other_token)
        assert ok.status_code == 201

    def test_it_counts_per_ip_across_tokens(self, world: ChatWorld, public: PublicApi, settings):  # type: ignore[no-untyped-def]
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(1, HOUR))
        ip_limit = 1 * ratelimit.IP_FACTOR
        statuses = []
        for _ in range(ip_limit + 1):
            visitor, token = new_visitor(world.widget)
            conv = world.conversation(visitor)
            response = public.call("post", public.messages_path(conv), {"body": "x"}, token=token)
            statuses.append(response.status_code)
        assert statuses == [201] * ip_limit + [429]
        assert ChatMessage.objects.count() == ip_limit

    def test_it_lets_a_cross_origin_caller_read_retry_after(
        self, world: ChatWorld, public: PublicApi, settings
    ):
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(1, HOUR))
        path = public.messages_path(world.conversation())
        public.call("post", path, {"body": "a"}, token=world.token, origin=SHOP)
        refused = public.call("post", path, {"body": "b"}, token=world.token, origin=SHOP)
        _assert_limited(refused)
        assert refused["Access-Control-Allow-Origin"] == SHOP
        exposed = {h.strip().lower() for h in refused["Access-Control-Expose-Headers"].split(",")}
        assert "retry-after" in exposed


class CreateVisitorLimitTests:
    def test_it_refuses_new_visitors_from_one_ip_over_the_limit(
        self, world: ChatWorld, public: PublicApi, settings
    ):
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(create_visitor=(2, HOUR))
        ip_limit = 2 * ratelimit.IP_FACTOR
        for _ in range(ip_limit):
            assert public.identify(REMOTE_ADDR="203.0.113.7").status_code == 201
        refused = public.identify({"page": {"url": f"{SHOP}/"}}, REMOTE_ADDR="203.0.113.7")
        error = _assert_limited(refused)
        assert error["message"].startswith("Too many requests")
        assert ChatVisitor.objects.count() == 2 + ip_limit
        assert not ChatVisitorPageView.objects.exists()

    def test_it_still_serves_other_ips_and_returning_visitors(
        self, world: ChatWorld, public: PublicApi, settings
    ):
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(create_visitor=(1, HOUR))
        for _ in range(ratelimit.IP_FACTOR):
            public.identify(REMOTE_ADDR="203.0.113.7")
        _assert_limited(public.identify(REMOTE_ADDR="203.0.113.7"))
        assert public.identify(REMOTE_ADDR="198.51.100.1").status_code == 201
        # A visitor who already has a token is identified, not created: not limited.
        again = public.identify(token=world.token, REMOTE_ADDR="203.0.113.7")
        assert again.status_code == 200


class OtherLimitTests:
    def test_it_limits_opening_conversations(self, world: ChatWorld, public: PublicApi, settings):  # type: ignore[no-untyped-def]
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(open_conversation=(1, HOUR))
        assert public.call("post", "/conversations", {}, token=world.token).status_code == 201
        _assert_limited(public.call("post", "/conversations", {}, token=world.token))
        assert ChatConversation.objects.count() == 1

    def test_it_limits_page_views(self, world: ChatWorld, public: PublicApi, settings):  # type: ignore[no-untyped-def]
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(page_view=(1, HOUR))
        page = {"url": f"{SHOP}/a"}
        assert public.call("post", "/page-views", page, token=world.token).status_code == 200
        _assert_limited(public.call("post", "/page-views", {"url": f"{SHOP}/b"}, token=world.token))
        assert ChatVisitorPageView.objects.count() == 1

    def test_it_limits_visitor_updates(self, world: ChatWorld, public: PublicApi, settings):  # type: ignore[no-untyped-def]
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(update_visitor=(1, HOUR))
        assert public.call("patch", "/visitor", {"name": "A"}, token=world.token).status_code == 200
        _assert_limited(public.call("patch", "/visitor", {"name": "B"}, token=world.token))
        assert ChatVisitor.objects.get(pk=world.visitor.pk).name == "A"

    def test_it_keeps_limits_apart_per_ip_address(self, world: ChatWorld, settings):  # type: ignore[no-untyped-def]
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(create_visitor=(1, HOUR))
        a = PublicApi(Client(REMOTE_ADDR="192.0.2.1"), world.widget.public_key)
        b = PublicApi(Client(REMOTE_ADDR="192.0.2.2"), world.widget.public_key)
        for _ in range(ratelimit.IP_FACTOR):
            a.identify()
        _assert_limited(a.identify())
        assert b.identify().status_code == 201
