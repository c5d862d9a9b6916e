"""The visitor and agent sockets through the real ASGI application (Channels communicator)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from crm.asgi import application
from crm.chat.models import ChatMessage
from crm.core.services import create_agent
from tests.chat.conftest import ChatWorld

pytestmark = pytest.mark.django_db(transaction=True)
HOST = [(b"host", b"testserver")]


async def visitor_socket(world: ChatWorld, *, origin: str = "https://shop.example") -> Any:
    comm = WebsocketCommunicator(
        application,
        f"/p/chat/{world.widget.public_key}/ws",
        headers=[*HOST, (b"origin", origin.encode())],
    )
    connected, _ = await comm.connect()
    assert connected
    return comm


async def authed_visitor(world: ChatWorld, conv, since: int = 0) -> Any:  # type: ignore[no-untyped-def]
    comm = await visitor_socket(world)
    await comm.send_json_to(
        {
            "type": "auth",
            "token": world.token,
            "conversation": str(conv.external_id),
            "since": since,
        }
    )
    return comm


async def until(comm: Any, kind: str, timeout: float = 3) -> dict:
    """Frames are read until one of ``kind`` arrives; earlier ones are returned too."""
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        if frame["type"] == kind:
            return frame


async def frames_until(comm: Any, kind: str) -> list[dict]:
    out = []
    while True:
        frame = await comm.receive_json_from(timeout=3)
        out.append(frame)
        if frame["type"] == kind:
            return out


def _session_cookie(user) -> bytes:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def agent_socket(user, *, origin: str = "http://testserver") -> Any:  # type: ignore[no-untyped-def]
    cookie = await sync_to_async(_session_cookie)(user)
    comm = WebsocketCommunicator(
        application,
        "/crm/chat/ws",
        headers=[*HOST, (b"origin", origin.encode()), (b"cookie", cookie)],
    )
    connected, _ = await comm.connect()
    assert connected
    return comm


async def closed_with(comm: Any, code: int) -> dict:
    error = await comm.receive_json_from(timeout=3)
    assert error["type"] == "error"
    closing = await comm.receive_output(timeout=3)
    assert closing == {"type": "websocket.close", "code": code}
    return error


class VisitorSocketTests:
    async def test_it_replays_since_then_streams_live(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        send = sync_to_async(tworld.service.send_visitor_message)
        for body in ("one", "two", "three"):
            await send(conversation=conv, visitor=tworld.visitor, body=body)
        comm = await authed_visitor(tworld, conv, since=1)
        frames = await frames_until(comm, "ready")
        assert [f["message"]["body"] for f in frames if f["type"] == "message"] == ["two", "three"]
        assert frames[-1]["conversation"]["last_seq"] == 3
        await sync_to_async(tworld.service.send_agent_message)(
            conversation=conv, agent=tworld.owner, body="live reply"
        )
        live = [await until(comm, "message"), await until(comm, "message")]
        assert [f["message"]["body"] for f in live] == ["Olivia joined the chat.", "live reply"]
        await comm.disconnect()

    async def test_send_is_acknowledged_and_idempotent(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        comm = await authed_visitor(tworld, conv)
        await until(comm, "ready")
        for _ in range(2):
            await comm.send_json_to({"type": "send", "body": "hello", "client_id": "c-1"})
            ack = await until(comm, "ack")
            assert ack["client_id"] == "c-1" and ack["seq"] == 1
        assert await ChatMessage.objects.filter(conversation=conv).acount() == 1
        await comm.send_json_to({"type": "send", "body": "  ", "client_id": "c-2"})
        error = await until(comm, "error")
        assert error["client_id"] == "c-2" and error["code"] == "invalid"
        await comm.disconnect()

    async def test_an_ack_in_order_stands_for_the_message_frame(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        comm = await authed_visitor(tworld, conv)
        await until(comm, "ready")
        await comm.send_json_to({"type": "send", "body": "one", "client_id": "o-1"})
        ack = await until(comm, "ack")
        assert (ack["seq"], ack["in_order"], ack["message"]["body"]) == (1, True, "one")
        await sync_to_async(tworld.service.send_agent_message)(
            conversation=conv, agent=tworld.owner, body="two"
        )
        seqs = []
        while not seqs or seqs[-1] < 3:
            seqs.append((await until(comm, "message"))["seq"])
        # Seq 1 is not sent again: the ack was its frame. 2 is "Olivia joined the chat."
        assert seqs == [2, 3]
        await comm.disconnect()

    async def test_an_ack_that_runs_ahead_is_a_plain_ack(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        await sync_to_async(tworld.service.send_agent_message)(
            conversation=conv, agent=tworld.owner, body="before"
        )
        comm = await authed_visitor(tworld, conv, since=0)
        await until(comm, "ready")
        # Synced up to 2, so the new message (3) follows in order; its retry acks 3
        # again, which the socket has already delivered: a plain ack.
        await comm.send_json_to({"type": "send", "body": "new", "client_id": "n-1"})
        assert (await until(comm, "ack"))["in_order"] is True
        await comm.send_json_to({"type": "send", "body": "new", "client_id": "n-1"})
        again = await until(comm, "ack")
        assert again["seq"] == 3 and "in_order" not in again
        await comm.disconnect()

    async def test_a_socket_opens_no_database_connection_per_message(
        self, tworld: ChatWorld
    ) -> None:
        """SQLite: the socket thread keeps its connection. PostgreSQL: each hop takes
        a pooled one and gives it back, and the pool opens no new connection."""
        from django.db import connection
        from django.db.backends.signals import connection_created

        conv = await sync_to_async(tworld.conversation)()
        comm = await authed_visitor(tworld, conv)
        await until(comm, "ready")
        await comm.send_json_to({"type": "send", "body": "warm up", "client_id": "w-0"})
        await until(comm, "ack")
        pool = getattr(connection, "pool", None)
        physical = pool.get_stats()["connections_num"] if pool is not None else 0
        opened: list[object] = []

        def count(sender: object, **kwargs: object) -> None:
            opened.append(sender)

        connection_created.connect(count)
        try:
            for i in range(5):
                await comm.send_json_to(
                    {"type": "send", "body": f"m{i}", "client_id": f"w-{i + 1}"}
                )
                await until(comm, "ack")
        finally:
            connection_created.disconnect(count)
        if pool is None:
            assert opened == []
        else:
            assert pool.get_stats()["connections_num"] == physical
        await comm.disconnect()

    async def test_it_never_forwards_internal_notes(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        comm = await authed_visitor(tworld, conv)
        await until(comm, "ready")
        await sync_to_async(tworld.service.send_system_message)(
            conversation=conv, body="secret note", internal=True
        )
        await sync_to_async(tworld.service.send_system_message)(conversation=conv, body="public")
        frame = await until(comm, "message")
        assert frame["message"]["body"] == "public"
        await comm.disconnect()

    async def test_it_refuses_another_visitors_conversation(self, tworld: ChatWorld) -> None:
        theirs = await sync_to_async(tworld.conversation)(tworld.other_visitor)
        comm = await authed_visitor(tworld, theirs)
        error = await closed_with(comm, 4401)
        assert error["code"] == "invalid_token"

    async def test_it_refuses_a_token_of_another_widget(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        comm = await visitor_socket(tworld)
        await comm.send_json_to(
            {"type": "auth", "token": tworld.other_token, "conversation": str(conv.external_id)}
        )
        await closed_with(comm, 4401)

    async def test_it_refuses_a_disallowed_origin(self, tworld: ChatWorld) -> None:
        comm = await visitor_socket(tworld, origin="https://evil.example")
        error = await closed_with(comm, 4403)
        assert error["code"] == "origin_not_allowed"

    async def test_it_refuses_frames_before_auth(self, tworld: ChatWorld) -> None:
        comm = await visitor_socket(tworld)
        await comm.send_json_to({"type": "send", "body": "sneaky"})
        await closed_with(comm, 4401)
        assert await ChatMessage.objects.acount() == 0

    async def test_typing_reaches_the_agent_but_not_back_to_the_visitor(self, tworld):
        conv = await sync_to_async(tworld.conversation)()
        agent = await agent_socket(tworld.owner)
        await until(agent, "ready")
        comm = await authed_visitor(tworld, conv)
        await until(comm, "ready")
        await comm.send_json_to({"type": "typing", "typing": True})
        typing = await until(agent, "typing")
        assert typing["sender_type"] == "visitor" and typing["typing"] is True
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        await agent.disconnect()


class PresenceTests:
    async def test_visitors_hear_when_an_agent_comes_online(self, tworld: ChatWorld) -> None:
        from django.core.cache import cache

        await sync_to_async(cache.clear)()
        conv = await sync_to_async(tworld.conversation)()
        comm = await authed_visitor(tworld, conv)
        ready = await until(comm, "ready")
        assert ready["agents_online"] == 0
        agent = await agent_socket(tworld.employee)
        await until(agent, "ready")
        assert (await until(comm, "presence"))["agents_online"] == 1
        await comm.send_json_to({"type": "ping"})
        assert (await until(comm, "pong"))["agents_online"] == 1
        await comm.disconnect()
        await agent.disconnect()


class AgentSocketTests:
    async def test_it_streams_inbox_events_and_sends_replies(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        agent = await agent_socket(tworld.owner)
        await until(agent, "ready")
        await sync_to_async(tworld.service.send_visitor_message)(
            conversation=conv, visitor=tworld.visitor, body="help?"
        )
        frame = await until(agent, "message")
        assert frame["message"]["body"] == "help?" and frame["conversation"] == str(
            conv.external_id
        )
        await agent.send_json_to({"type": "subscribe", "conversation": str(conv.external_id)})
        replayed = await until(agent, "message")
        assert replayed["seq"] == 1
        await until(agent, "subscribed")
        await agent.send_json_to(
            {
                "type": "send",
                "conversation": str(conv.external_id),
                "body": "hi!",
                "client_id": "a1",
            }
        )
        ack = await until(agent, "ack")
        assert ack["message"]["body"] == "hi!" and ack["seq"] == 3  # after "Olivia joined"
        await agent.send_json_to(
            {"type": "read", "conversation": str(conv.external_id), "up_to_seq": 1}
        )
        receipt = await until(agent, "read")
        assert receipt["reader"] == "user" and receipt["up_to_seq"] == 1
        await agent.disconnect()

    async def test_it_refuses_anonymous_and_agents_without_chat_permission(self, tworld):
        comm = WebsocketCommunicator(application, "/crm/chat/ws", headers=HOST)
        await comm.connect()
        await closed_with(comm, 4401)
        nobody = await sync_to_async(create_agent)(
            username="nobody", password="x", role="Employee", validate=False
        )
        await sync_to_async(nobody.groups.clear)()
        comm = await agent_socket(nobody)
        await closed_with(comm, 4403)

    async def test_it_refuses_a_cross_site_origin(self, tworld: ChatWorld) -> None:
        comm = await agent_socket(tworld.owner, origin="https://evil.example")
        error = await closed_with(comm, 4403)
        assert error["code"] == "origin_not_allowed"

    async def test_a_limited_agent_cannot_subscribe_to_a_colleagues_chat(self, tworld):
        conv = await sync_to_async(tworld.conversation)()
        await sync_to_async(tworld.service.assign_conversation)(
            conversation=conv, agent=tworld.owner, by=tworld.owner
        )
        agent = await agent_socket(tworld.employee)
        await until(agent, "ready")
        await agent.send_json_to({"type": "subscribe", "conversation": str(conv.external_id)})
        error = await until(agent, "error")
        assert error["code"] == "not_found"
        await sync_to_async(tworld.service.send_visitor_message)(
            conversation=conv, visitor=tworld.visitor, body="private"
        )
        assert await agent.receive_nothing(timeout=0.5)
        await agent.disconnect()

    async def test_an_employee_sees_unassigned_chats_live(self, tworld: ChatWorld) -> None:
        conv = await sync_to_async(tworld.conversation)()
        agent = await agent_socket(tworld.employee)
        await until(agent, "ready")
        await sync_to_async(tworld.service.send_visitor_message)(
            conversation=conv, visitor=tworld.visitor, body="anyone?"
        )
        assert (await until(agent, "message"))["message"]["body"] == "anyone?"
        await agent.disconnect()


_ = asyncio
