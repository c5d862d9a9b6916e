"""Abuse limits, through the real cache (a per-test cleared local-memory cache).

Windows are an hour long so a test never straddles a fixed-window boundary.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
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


class FloodTests:
    """One visitor or one address flooding: refused with Retry-After, nobody else is."""

    def test_a_flooding_ip_is_refused_while_visitors_elsewhere_are_served(
        self, world: ChatWorld, settings
    ) -> None:
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(2, HOUR))
        flooder = PublicApi(Client(REMOTE_ADDR="203.0.113.7"), world.widget.public_key)
        elsewhere = PublicApi(Client(REMOTE_ADDR="198.51.100.1"), world.widget.public_key)
        flooding = []
        for _ in range(ratelimit.IP_FACTOR):  # each token stays within its own limit
            visitor, token = new_visitor(world.widget)
            flooding.append((world.conversation(visitor), token))
        sent = 0
        for conv, token in flooding:
            for _ in range(2):
                response = flooder.call(
                    "post", flooder.messages_path(conv), {"body": "spam"}, token=token
                )
                sent += response.status_code == 201
        assert sent == 2 * ratelimit.IP_FACTOR  # exactly the address's limit
        conv, token = flooding[0]
        _assert_limited(
            flooder.call("post", flooder.messages_path(conv), {"body": "more"}, token=token)
        )
        # A brand-new visitor on the same address is refused too: the address is spent.
        fresh_visitor, fresh_token = new_visitor(world.widget)
        fresh = world.conversation(fresh_visitor)
        _assert_limited(
            flooder.call("post", flooder.messages_path(fresh), {"body": "hi"}, token=fresh_token)
        )
        # Everyone else is served, and the flooders can still read their chats.
        mine = world.conversation()
        ok = elsewhere.call(
            "post", elsewhere.messages_path(mine), {"body": "hi"}, token=world.token
        )
        assert ok.status_code == 201, ok.content
        assert flooder.call("get", flooder.messages_path(conv), token=token).status_code == 200
        assert ChatMessage.objects.filter(body="hi").count() == 1
        assert ChatMessage.objects.filter(body__in=["more"]).count() == 0

    def test_x_forwarded_for_does_not_split_an_address_into_many(
        self, world: ChatWorld, settings
    ) -> None:
        """The visitor's address is the connection's (uvicorn resolves trusted proxies)."""
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(create_visitor=(1, HOUR))
        api = PublicApi(Client(REMOTE_ADDR="203.0.113.7"), world.widget.public_key)
        statuses = [
            api.identify(headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
            for i in range(ratelimit.IP_FACTOR + 1)
        ]
        assert statuses == [201] * ratelimit.IP_FACTOR + [429]

    def test_the_limit_lifts_when_its_window_ends(
        self, world: ChatWorld, public: PublicApi, settings
    ) -> None:
        import time_machine

        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(1, 60))
        path = public.messages_path(world.conversation())
        with time_machine.travel(1_899_999_980.5, tick=False) as clock:  # 20 s into a window
            assert public.call("post", path, {"body": "a"}, token=world.token).status_code == 201
            refused = public.call("post", path, {"body": "b"}, token=world.token)
            _assert_limited(refused, window=60)
            wait = int(refused["Retry-After"])
            assert wait == 40  # exactly the rest of the window, not a made-up number
            clock.shift(wait - 1)
            _assert_limited(public.call("post", path, {"body": "b"}, token=world.token), 60)
            clock.shift(1)
            assert public.call("post", path, {"body": "b"}, token=world.token).status_code == 201


def _in_own_thread(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


class SocketFloodTests:
    """The visitor socket spends the same per-visitor budget as the HTTP API."""

    @staticmethod
    async def _socket(world: ChatWorld, token: str, conv) -> Any:  # type: ignore[no-untyped-def]
        from channels.testing import WebsocketCommunicator

        from crm.asgi import application

        comm = WebsocketCommunicator(
            application,
            f"/p/chat/{world.widget.public_key}/ws",
            headers=[(b"host", b"testserver"), (b"origin", SHOP.encode())],
        )
        connected, _ = await comm.connect()
        assert connected
        await comm.send_json_to(
            {"type": "auth", "token": token, "conversation": str(conv.external_id), "since": 0}
        )
        while (await comm.receive_json_from(timeout=3))["type"] != "ready":
            pass
        return comm

    @staticmethod
    async def _send(comm: Any, client_id: str) -> dict:
        await comm.send_json_to({"type": "send", "body": client_id, "client_id": client_id})
        while True:
            frame = await comm.receive_json_from(timeout=3)
            if frame.get("client_id") == client_id and frame["type"] in {"ack", "error"}:
                return frame

    async def test_a_flooding_socket_is_refused_while_other_visitors_chat_on(
        self, tworld: ChatWorld, settings
    ) -> None:
        from asgiref.sync import sync_to_async

        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(3, HOUR))
        world = tworld
        other, other_token = await sync_to_async(new_visitor)(world.widget)
        mine = await sync_to_async(world.conversation)()
        theirs = await sync_to_async(world.conversation)(other)
        flooder = await self._socket(world, world.token, mine)
        bystander = await self._socket(world, other_token, theirs)
        try:
            answers = [await self._send(flooder, f"f{i}") for i in range(5)]
            assert [a["type"] for a in answers] == ["ack"] * 3 + ["error"] * 2
            for refused in answers[3:]:
                assert refused["code"] == "rate_limited"
                assert 1 <= refused["retry_after"] <= HOUR  # the socket's Retry-After
                assert "wait" in refused["message"] and "try again" in refused["message"]
            assert (await self._send(bystander, "b0"))["type"] == "ack"
            # Switching to HTTP doesn't open a fresh budget for the flooder.
            api = PublicApi(Client(), world.widget.public_key)
            # Database work of this async test runs in a thread that closes its
            # connection: one left open would outlive the test database on PostgreSQL.
            over_http = _in_own_thread(
                api.call, "post", api.messages_path(mine), {"body": "via http"}, token=world.token
            )
            _assert_limited(over_http)
        finally:
            await flooder.disconnect()
            await bystander.disconnect()
        bodies = _in_own_thread(lambda: sorted(ChatMessage.objects.values_list("body", flat=True)))
        assert bodies == ["b0", "f0", "f1", "f2"]


def test_the_refusal_survives_context_managers_on_its_way_up() -> None:
    """contextlib sets ``__traceback__`` on what passes through (as the socket's database
    hops do); the refusal must reach its handler, not turn into another error there."""
    from contextlib import contextmanager

    @contextmanager
    def around():  # type: ignore[no-untyped-def]
        yield

    with pytest.raises(ratelimit.Limited) as caught, around():
        raise ratelimit.Limited("send_message", 7)
    assert caught.value.retry_after == 7


@pytest.mark.redis
class RedisCounterTests:
    """On Redis both counters of a check share one round trip; the limits hold the same."""

    @pytest.fixture(autouse=True)
    def _redis_cache(self, settings, redis_url: str):  # type: ignore[no-untyped-def]
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": f"rl-test-{uuid.uuid4().hex}",
            }
        }
        yield
        from django.core.cache import cache

        cache.clear()

    def test_the_token_limit_refuses_the_hit_over_it(self, settings) -> None:
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(3, HOUR))
        for _ in range(3):
            ratelimit.check("send_message", ip="203.0.113.9", token_key="t1")
        with pytest.raises(ratelimit.Limited) as caught:
            ratelimit.check("send_message", ip="203.0.113.9", token_key="t1")
        assert 1 <= caught.value.retry_after <= HOUR
        # Another token on the same address still has room (the IP allows 4x).
        ratelimit.check("send_message", ip="203.0.113.9", token_key="t2")

    def test_the_address_limit_covers_every_token_on_it(self, settings) -> None:
        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(1, HOUR))
        for i in range(ratelimit.IP_FACTOR):
            ratelimit.check("send_message", ip="203.0.113.7", token_key=f"t{i}")
        with pytest.raises(ratelimit.Limited):
            ratelimit.check("send_message", ip="203.0.113.7", token_key="fresh")

    def test_the_counters_live_in_the_django_cache(self, settings) -> None:
        from django.core.cache import cache

        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(2, HOUR))
        ratelimit.check("send_message", ip=None, token_key="t9")
        ratelimit.check("send_message", ip=None, token_key="t9")
        cache.clear()  # what tests and operators use to reset limits
        ratelimit.check("send_message", ip=None, token_key="t9")

    def test_it_still_counts_after_redis_forgot_the_script(self, settings) -> None:
        """A restarted Redis has no scripts loaded: the counter loads it again."""
        from django.core.cache import cache

        settings.CRM_CHAT_RATE_LIMITS = rate_limits(send_message=(2, HOUR))
        ratelimit.check("send_message", ip=None, token_key="t5")
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        client.script_flush()
        ratelimit.check("send_message", ip=None, token_key="t5")
        with pytest.raises(ratelimit.Limited):
            ratelimit.check("send_message", ip=None, token_key="t5")
        key = cache.make_and_validate_key(f"crm-rl:send_message:t:t5:{int(time.time()) // HOUR}")
        assert 0 < client.ttl(key) <= HOUR + 1  # the window's counter expires by itself
