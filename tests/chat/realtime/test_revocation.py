"""Open sockets keep only the rights their owner still has, on every worker.

Each trigger changes, through the product's own code paths (the logout view, the
ORM's ``save`` and relation managers, ``ChatService``), something an open socket's
authorisation rested on; the socket must then close with the documented code or,
for a single conversation, stop following it (a ``revoked`` frame), after which
it can neither read that conversation again nor write to it.

The same triggers run against one worker (a real uvicorn in this process, the
in-memory layer) and against two worker processes over PostgreSQL and Redis,
where the change is made in this test process: a third process, as a change
made on another machine would be. The periodic re-check is set to an hour in
those tests, so only the revocation event can close the socket in time; the
second line (the periodic re-check and the check before each write) has its own
tests with changes that bypass every signal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import websockets
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client

from crm.chat.models import ChatConversation, ChatMessage, ChatWidget
from crm.core.models import Team
from tests.chat.conftest import ChatWorld, make_world
from tests.support.cluster import SHOP, Cluster

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough that a test never waits for it: only a revocation event can act in time.
NO_PERIODIC_RECHECK = 3600
WAIT = 15.0  # generous bound for "within about a second" on a loaded CI machine


@dataclass
class Stage:
    """Where the sockets live, and how a change is made."""

    ports: list[int]
    change: Callable[..., Any]


@pytest.fixture
def one_worker(asgi_server, settings) -> Stage:  # type: ignore[no-untyped-def]
    settings.CRM_CHAT_SOCKET_RECHECK_SECONDS = NO_PERIODIC_RECHECK
    # Changes run in the server's own worker thread, as a request of that server would.
    return Stage([asgi_server.port], asgi_server.call)


def in_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run a database change in its own thread, closing that thread's connection."""

    def run() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return asyncio.to_thread(run)


@pytest.fixture
def two_workers(transactional_db, redis_url, settings) -> Iterator[Stage]:  # type: ignore[no-untyped-def]
    cluster = Cluster(redis_url)
    cluster.env["CRM_CHAT_SOCKET_RECHECK_SECONDS"] = str(NO_PERIODIC_RECHECK)
    # This process publishes on the workers' Redis: it is the third machine.
    settings.REDIS_URL = redis_url
    try:
        yield Stage([cluster.start(), cluster.start()], lambda fn: fn())  # run in_thread
    finally:
        cluster.stop()


@pytest.fixture(params=["one_worker", pytest.param("two_workers", marks=[pytest.mark.postgres])])
def stage(request: pytest.FixtureRequest) -> Stage:
    return request.getfixturevalue(request.param)


# ----------------------------------------------------------------------- scene


@dataclass
class Scene:
    world: ChatWorld
    conversation: ChatConversation
    team: Team
    client: Client  # the employee's logged-in browser

    @property
    def conv_id(self) -> str:
        return str(self.conversation.external_id)

    @property
    def cookie(self) -> str:
        return f"sessionid={self.client.cookies['sessionid'].value}"

    def message_count(self) -> int:
        return ChatMessage.objects.filter(conversation=self.conversation).count()


def _scene() -> Scene:
    world = make_world()
    team = Team.objects.create(name="Support")
    team.members.add(world.employee)
    world.service.update_widget(widget=world.widget, team=team)
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hello")
    client = Client()
    client.force_login(world.employee)
    return Scene(world, conv, team, client)


@pytest.fixture
def scene(transactional_db) -> Scene:  # type: ignore[no-untyped-def]
    return _scene()


async def agent_socket(port: int, scene: Scene) -> Any:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/crm/chat/ws",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": scene.cookie},
        open_timeout=10,
    )
    await _until(ws, "ready")
    await ws.send(json.dumps({"type": "subscribe", "conversation": scene.conv_id, "since": 0}))
    await _until(ws, "subscribed")
    return ws


async def visitor_socket(port: int, scene: Scene) -> Any:
    key = scene.world.widget.public_key
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/p/chat/{key}/ws", origin=SHOP, open_timeout=10
    )
    auth = {"type": "auth", "token": scene.world.token, "conversation": scene.conv_id, "since": 0}
    await ws.send(json.dumps(auth))
    await _until(ws, "ready")
    return ws


async def _until(ws: Any, kind: str) -> dict:
    async with asyncio.timeout(WAIT):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def outcome(ws: Any, conv_id: str) -> tuple[str, Any]:
    """What the socket did after the change: ("closed", (code, error)) or ("revoked", conv)."""
    error = None
    try:
        async with asyncio.timeout(WAIT):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "error":
                    error = frame["code"]
                if frame["type"] == "revoked" and frame["conversation"] == conv_id:
                    return "revoked", frame["conversation"]
    except websockets.ConnectionClosed:
        return "closed", (ws.close_code, error)
    except TimeoutError:
        return "still open", None


async def refused_afterwards(ws: Any, scene: Scene) -> list[dict]:
    """An agent socket that lost one conversation: reading and writing it fail."""
    await ws.send(json.dumps({"type": "subscribe", "conversation": scene.conv_id, "since": 0}))
    frames = [json.loads(await ws.recv())]
    await ws.send(
        json.dumps({"type": "send", "conversation": scene.conv_id, "body": "x", "client_id": "r1"})
    )
    frames.append(json.loads(await ws.recv()))
    return frames


# -------------------------------------------------------------------- triggers


def logout(scene: Scene) -> None:
    scene.client.post("/logout/")


def deactivate(scene: Scene) -> None:
    employee = get_user_model().objects.get(pk=scene.world.employee.pk)
    employee.is_active = False
    employee.save()


def change_password(scene: Scene) -> None:
    employee = get_user_model().objects.get(pk=scene.world.employee.pk)
    employee.set_password("a-new-password-1")
    employee.save()


def remove_role(scene: Scene) -> None:
    scene.world.employee.groups.clear()


def role_loses_chat(scene: Scene) -> None:
    view_chat = Permission.objects.get(codename="view_chat", content_type__app_label="crm_chat")
    Group.objects.get(name="Employee").permissions.remove(view_chat)


def leave_team(scene: Scene) -> None:
    scene.team.members.remove(scene.world.employee)


def reassign(scene: Scene) -> None:
    scene.world.service.assign_conversation(
        conversation=scene.conversation, agent=scene.world.owner, by=scene.world.owner
    )


def delete_conversation(scene: Scene) -> None:
    scene.world.service.delete_conversation(conversation=scene.conversation, by=scene.world.owner)


def regenerate_key(scene: Scene) -> None:
    scene.world.service.regenerate_public_key(widget=scene.world.widget)


def deactivate_widget(scene: Scene) -> None:
    scene.world.service.update_widget(widget=scene.world.widget, is_active=False)


def delete_widget(scene: Scene) -> None:
    scene.world.service.delete_widget(widget=scene.world.widget)


# trigger -> what the employee's agent socket must do
AGENT_TRIGGERS: dict[str, tuple[Callable[[Scene], None], str, Any]] = {
    "logout": (logout, "closed", (4401, "session_ended")),
    "deactivated": (deactivate, "closed", (4401, "session_ended")),
    "password_changed": (change_password, "closed", (4401, "session_ended")),
    "role_removed": (remove_role, "closed", (4403, "forbidden")),
    "role_loses_view_chat": (role_loses_chat, "closed", (4403, "forbidden")),
    "moved_out_of_team": (leave_team, "revoked", None),
    "reassigned": (reassign, "revoked", None),
    "conversation_deleted": (delete_conversation, "revoked", None),
}
# trigger -> (close code, error code) of the visitor's socket
VISITOR_TRIGGERS: dict[str, tuple[Callable[[Scene], None], tuple[int, str]]] = {
    "key_regenerated": (regenerate_key, (4404, "unknown_widget")),
    "widget_deactivated": (deactivate_widget, (4404, "unknown_widget")),
    "widget_deleted": (delete_widget, (4404, "unknown_widget")),
    "conversation_deleted": (delete_conversation, (4404, "unknown_conversation")),
}


class AgentSocketRevocationTests:
    @pytest.mark.parametrize("trigger", list(AGENT_TRIGGERS))
    def test_the_agent_socket_loses_what_the_agent_lost(
        self, stage: Stage, scene: Scene, trigger: str
    ) -> None:
        change, kind, expected = AGENT_TRIGGERS[trigger]
        before = scene.message_count()

        async def run() -> None:
            # One tab on each worker: both must lose access.
            sockets = [await agent_socket(port, scene) for port in stage.ports]
            await in_thread(stage.change, lambda: change(scene))
            for ws in sockets:
                what, detail = await outcome(ws, scene.conv_id)
                assert what == kind, f"{trigger}: socket {what} {detail}"
                if kind == "closed":
                    assert detail == expected
                else:
                    after = await refused_afterwards(ws, scene)
                    assert [f["type"] for f in after] == ["error", "error"], after
                    assert {f["code"] for f in after} == {"not_found"}
                with suppress(websockets.ConnectionClosed):
                    await ws.close()

        asyncio.run(run())
        # Nothing was written on the employee's behalf after the change.
        assert not ChatMessage.objects.filter(
            conversation=scene.conversation, sender_type="user", sender_id=scene.world.employee.pk
        ).exists()
        assert scene.message_count() >= before


class VisitorSocketRevocationTests:
    @pytest.mark.parametrize("trigger", list(VISITOR_TRIGGERS))
    def test_the_visitor_socket_closes_when_the_widget_or_chat_goes(
        self, stage: Stage, scene: Scene, trigger: str
    ) -> None:
        change, expected = VISITOR_TRIGGERS[trigger]

        async def run() -> None:
            sockets = [await visitor_socket(port, scene) for port in stage.ports]
            await in_thread(stage.change, lambda: change(scene))
            for ws in sockets:
                assert await outcome(ws, scene.conv_id) == ("closed", expected), trigger

        visitor_messages = ChatMessage.objects.filter(sender_type="visitor").count()
        asyncio.run(run())
        assert ChatMessage.objects.filter(sender_type="visitor").count() == visitor_messages


# ------------------------------------------------------------ the second line


def test_a_change_no_event_announces_ends_access_at_the_next_periodic_check(
    asgi_server, scene: Scene, settings
) -> None:  # type: ignore[no-untyped-def]
    """``QuerySet.update`` sends no signal: the periodic re-check still closes both."""
    settings.CRM_CHAT_SOCKET_RECHECK_SECONDS = 1

    async def run() -> None:
        agent = await agent_socket(asgi_server.port, scene)
        visitor = await visitor_socket(asgi_server.port, scene)
        await in_thread(
            get_user_model().objects.filter(pk=scene.world.employee.pk).update, is_active=False
        )
        await in_thread(ChatWidget.objects.filter(pk=scene.world.widget.pk).update, is_active=False)
        assert await outcome(agent, scene.conv_id) == ("closed", (4401, "session_ended"))
        assert await outcome(visitor, scene.conv_id) == ("closed", (4404, "unknown_widget"))

    asyncio.run(run())


def test_writes_check_rights_first_even_without_any_event(
    asgi_server, scene: Scene, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.CRM_CHAT_SOCKET_RECHECK_SECONDS = NO_PERIODIC_RECHECK
    before = scene.message_count()

    async def run() -> None:
        agent = await agent_socket(asgi_server.port, scene)
        visitor = await visitor_socket(asgi_server.port, scene)
        # Silent changes: no signal, no event.
        memberships = get_user_model().groups.through.objects
        await in_thread(memberships.filter(user_id=scene.world.employee.pk).delete)
        await in_thread(
            ChatConversation.objects.filter(pk=scene.conversation.pk).update,
            deleted_at="2026-01-01T00:00:00Z",
        )
        send = {"type": "send", "conversation": scene.conv_id, "body": "late", "client_id": "w1"}
        await agent.send(json.dumps(send))
        assert await outcome(agent, scene.conv_id) == ("closed", (4403, "forbidden"))
        await visitor.send(json.dumps({"type": "send", "body": "late", "client_id": "w2"}))
        assert await outcome(visitor, scene.conv_id) == (
            "closed",
            (4404, "unknown_conversation"),
        )

    asyncio.run(run())
    assert scene.message_count() == before


@pytest.mark.postgres
def test_a_worker_whose_redis_subscription_came_back_rereads_every_sockets_rights(
    two_workers: Stage, scene: Scene, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Revocation events published while a worker's subscription was down are lost:
    the reconnect itself makes its sockets read their rights again (periodic: 1 h)."""

    async def run() -> None:
        port = two_workers.ports[0]
        agent = await agent_socket(port, scene)
        visitor = await visitor_socket(port, scene)
        # Silent changes (no signal, no event), as if their events were lost in transit.
        await in_thread(
            get_user_model().objects.filter(pk=scene.world.employee.pk).update, is_active=False
        )
        await in_thread(ChatWidget.objects.filter(pk=scene.world.widget.pk).update, is_active=False)
        admin = redis.Redis.from_url(redis_url)
        try:
            hubs = [c for c in admin.client_list() if c["name"].startswith("crm-hub-")]
            assert hubs, "the workers subscribe with named connections"
            for client in hubs:
                admin.client_kill_filter(_id=client["id"])
        finally:
            admin.close()
        assert await outcome(agent, scene.conv_id) == ("closed", (4401, "session_ended"))
        assert await outcome(visitor, scene.conv_id) == ("closed", (4404, "unknown_widget"))

    asyncio.run(run())
