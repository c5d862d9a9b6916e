"""Who may call what on the agent side: every endpoint against every kind of agent.

One cell per (endpoint, caller). A refused call must answer the expected status,
leave every chat, widget, lead and person row as it was, and show nothing of the
chat; an allowed write must really have happened. The agent WebSocket's subscribe
is one more endpoint of the same matrix.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from django.test import Client
from django.urls import reverse

from crm.asgi import application
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatWidget
from crm.chat.services import chat_service
from crm.core.models import Lead, Person
from crm.core.roles import EMPLOYEE, ROLE_PERMISSIONS
from tests.chat.conftest import ChatWorld, make_world
from tests.security.conftest import session_cookie

PRIVATE_TEXT = "my card ends in 4242"
CALLERS = (
    "anonymous",
    "no_chat_permission",
    "employee_unassigned",
    "employee_own",
    "employee_others",
    "owner",
)
# The chat each caller is pointed at: employees may open unassigned chats and their
# own, never a colleague's; the owner may open everyone's.
TARGET_ASSIGNEE = {
    "anonymous": None,
    "no_chat_permission": None,
    "employee_unassigned": None,
    "employee_own": "employee",
    "employee_others": "owner",
    "owner": "employee",
}
SEES_THE_CHAT = {"employee_unassigned", "employee_own", "owner"}


@dataclass
class Scene:
    world: ChatWorld
    caller: str
    user: AbstractUser | None
    conversation: ChatConversation
    widget_key: str

    @property
    def conv_id(self) -> str:
        return str(self.conversation.external_id)

    @property
    def widget_id(self) -> str:
        return str(self.world.widget.external_id)

    def fresh(self) -> ChatConversation:
        return ChatConversation.objects.get(pk=self.conversation.pk)

    def snapshot(self) -> tuple:
        """Everything a refused call must leave exactly as it was."""
        conv = ChatConversation.objects.filter(pk=self.conversation.pk).first()
        return (
            conv and (conv.status, conv.user_assigned_id, conv.lead_id, conv.last_seq),
            list(ChatMessage.objects.order_by("pk").values_list("pk", "body", "read_at", "seq")),
            list(ChatVisitor.objects.order_by("pk").values_list("pk", "name", "person_id")),
            list(
                ChatWidget.objects.order_by("pk").values_list(
                    "pk", "name", "is_active", "public_key", "allowed_origins", "deleted_at"
                )
            ),
            Lead.objects.count(),
            Person.objects.count(),
        )


def _chat(scene: Scene, name: str) -> str:
    return reverse(name, args=[scene.conv_id])


def _action(name: str) -> Callable[[Scene], str]:
    return lambda s: reverse("crm-chat-action", args=[s.conv_id, name])


def _widget(name: str) -> Callable[[Scene], str]:
    return lambda s: reverse(name, args=[s.widget_id])


def _close_first(scene: Scene) -> None:
    chat_service.close_conversation(conversation=scene.conversation, by=scene.world.owner)


def _delete_widget_first(scene: Scene) -> None:
    chat_service.delete_widget(widget=scene.world.widget)


WIDGET_FORM = {
    "welcome_message": "",
    "color": "#2563eb",
    "position": "bottom-right",
    "allowed_origins": "https://shop.example",
    "team": "",
    "is_active": "on",
}


@dataclass(frozen=True)
class Endpoint:
    method: str  # "get", "post" (form) or "json" (POST with a JSON body)
    url: Callable[[Scene], str]
    data: Any = None
    prepare: Callable[[Scene], None] | None = None
    done: Callable[[Scene], bool] | None = None  # the allowed call's effect is visible


ENDPOINTS: dict[str, Endpoint] = {
    "inbox": Endpoint("get", lambda s: reverse("crm-chat-index") + "?status=all"),
    "unread_json": Endpoint("get", lambda s: reverse("crm-chat-unread")),
    "conversation": Endpoint("get", lambda s: _chat(s, "crm-chat-show")),
    "messages_json": Endpoint("get", lambda s: _chat(s, "crm-chat-messages") + "?since=0"),
    "send_json": Endpoint(
        "json",
        lambda s: _chat(s, "crm-chat-send"),
        {"body": "Reply from the matrix", "client_id": "m-1"},
        done=lambda s: ChatMessage.objects.filter(body="Reply from the matrix").exists(),
    ),
    "read_json": Endpoint(
        "json",
        lambda s: _chat(s, "crm-chat-read"),
        {},
        done=lambda s: (
            not ChatMessage.objects.filter(
                conversation=s.conversation, sender_type="visitor", read_at__isnull=True
            ).exists()
        ),
    ),
    "assign": Endpoint(
        "post",
        _action("assign"),
        {"agent": "me"},
        done=lambda s: s.fresh().user_assigned_id == s.user.pk,  # type: ignore[union-attr]
    ),
    "pending": Endpoint("post", _action("pending"), done=lambda s: s.fresh().status == "pending"),
    "close": Endpoint("post", _action("close"), done=lambda s: s.fresh().status == "closed"),
    "reopen": Endpoint(
        "post", _action("reopen"), prepare=_close_first, done=lambda s: s.fresh().status == "open"
    ),
    "convert": Endpoint("post", _action("convert"), done=lambda s: s.fresh().lead_id is not None),
    "promote": Endpoint(
        "post",
        _action("promote"),
        done=lambda s: ChatVisitor.objects.get(pk=s.conversation.visitor_id).person_id is not None,
    ),
    "widget_list": Endpoint("get", lambda s: reverse("crm-chat-widget-index")),
    "widget_new_form": Endpoint("get", lambda s: reverse("crm-chat-widget-create")),
    "widget_create": Endpoint(
        "post",
        lambda s: reverse("crm-chat-widget-create"),
        {**WIDGET_FORM, "name": "Created by the matrix"},
        done=lambda s: ChatWidget.objects.filter(name="Created by the matrix").exists(),
    ),
    "widget_edit_form": Endpoint("get", _widget("crm-chat-widget-edit")),
    "widget_edit": Endpoint(
        "post",
        _widget("crm-chat-widget-edit"),
        {**WIDGET_FORM, "name": "Renamed by the matrix"},
        done=lambda s: ChatWidget.objects.filter(name="Renamed by the matrix").exists(),
    ),
    "widget_toggle": Endpoint(
        "post",
        _widget("crm-chat-widget-toggle"),
        done=lambda s: not ChatWidget.objects.get(pk=s.world.widget.pk).is_active,
    ),
    "widget_delete_form": Endpoint("get", _widget("crm-chat-widget-delete")),
    "widget_delete": Endpoint(
        "post",
        _widget("crm-chat-widget-delete"),
        done=lambda s: ChatWidget.objects.get(pk=s.world.widget.pk).deleted_at is not None,
    ),
    "widget_restore": Endpoint(
        "post",
        _widget("crm-chat-widget-restore"),
        prepare=_delete_widget_first,
        done=lambda s: ChatWidget.objects.get(pk=s.world.widget.pk).deleted_at is None,
    ),
    "widget_purge_form": Endpoint(
        "get", _widget("crm-chat-widget-purge"), prepare=_delete_widget_first
    ),
    "widget_purge": Endpoint(
        "post",
        _widget("crm-chat-widget-purge"),
        {"name": "Main site"},
        prepare=_delete_widget_first,
        done=lambda s: not ChatWidget.objects.filter(pk=s.world.widget.pk).exists(),
    ),
    "widget_regenerate_form": Endpoint("get", _widget("crm-chat-widget-regenerate")),
    "widget_regenerate": Endpoint(
        "post",
        _widget("crm-chat-widget-regenerate"),
        done=lambda s: ChatWidget.objects.get(pk=s.world.widget.pk).public_key != s.widget_key,
    ),
}
CHAT_READ = (302, 403, 200, 200, 404, 200)
CHAT_ACTION = (302, 403, 302, 302, 404, 302)
WIDGET_PAGE = (302, 403, 403, 403, 403, 200)
WIDGET_WRITE = (302, 403, 403, 403, 403, 302)
# Expected status per endpoint, in CALLERS order.
EXPECTED: dict[str, tuple[int, ...]] = {
    "inbox": (302, 403, 200, 200, 200, 200),
    "unread_json": (302, 403, 200, 200, 200, 200),
    "conversation": CHAT_READ,
    "messages_json": CHAT_READ,
    "send_json": (302, 403, 201, 201, 404, 201),
    "read_json": CHAT_READ,
    "assign": CHAT_ACTION,
    "pending": CHAT_ACTION,
    "close": CHAT_ACTION,
    "reopen": CHAT_ACTION,
    "convert": CHAT_ACTION,
    "promote": CHAT_ACTION,
    "widget_list": WIDGET_PAGE,
    "widget_new_form": WIDGET_PAGE,
    "widget_create": WIDGET_WRITE,
    "widget_edit_form": WIDGET_PAGE,
    "widget_edit": WIDGET_WRITE,
    "widget_toggle": WIDGET_WRITE,
    "widget_delete_form": WIDGET_PAGE,
    "widget_delete": WIDGET_WRITE,
    "widget_restore": WIDGET_WRITE,
    "widget_purge_form": WIDGET_PAGE,
    "widget_purge": WIDGET_WRITE,
    "widget_regenerate_form": WIDGET_PAGE,
    "widget_regenerate": WIDGET_WRITE,
}
# The agent socket: a close code, or the frame that answers "subscribe".
SOCKET_EXPECTED = {
    "anonymous": 4401,
    "no_chat_permission": 4403,
    "employee_unassigned": "subscribed",
    "employee_own": "subscribed",
    "employee_others": "error",
    "owner": "subscribed",
}
HTTP_CELLS = [
    pytest.param(name, caller, EXPECTED[name][i], id=f"{name}-{caller}-{EXPECTED[name][i]}")
    for name in ENDPOINTS
    for i, caller in enumerate(CALLERS)
]
SOCKET_CELLS = [
    pytest.param(caller, SOCKET_EXPECTED[caller], id=f"agent_socket-{caller}") for caller in CALLERS
]


def _agent_without_chat(username: str) -> AbstractUser:
    """Someone with the Employee's CRM permissions but none of the chat's."""
    user = get_user_model().objects.create_user(username=username, password="x")
    codenames = ROLE_PERMISSIONS["crm_core"][EMPLOYEE]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="crm_core", codename__in=codenames)
    )
    return user


def build_scene(caller: str) -> Scene:
    world = make_world()
    users: dict[str, AbstractUser | None] = {
        "anonymous": None,
        "no_chat_permission": _agent_without_chat("nico"),
        "owner": world.owner,
    }
    user = users.get(caller, world.employee)
    visitor, _ = chat_service.identify_visitor(widget=world.widget, token=None)
    chat_service.update_visitor_details(visitor=visitor, name="Ann Example")
    conv = chat_service.open_conversation(visitor=visitor)
    chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=PRIVATE_TEXT)
    assignee = {"employee": world.employee, "owner": world.owner}.get(TARGET_ASSIGNEE[caller] or "")
    if assignee is not None:
        chat_service.assign_conversation(conversation=conv, agent=assignee, by=assignee)
    return Scene(world, caller, user, conv, world.widget.public_key)


def _call(client: Client, endpoint: Endpoint, scene: Scene) -> Any:
    url = endpoint.url(scene)
    if endpoint.method == "get":
        return client.get(url)
    if endpoint.method == "json":
        return client.post(url, json.dumps(endpoint.data), content_type="application/json")
    return client.post(url, endpoint.data or {})


class AgentAccessMatrixTests:
    @pytest.mark.django_db
    @pytest.mark.parametrize(("endpoint", "caller", "status"), HTTP_CELLS)
    def test_it_answers_each_caller_with_the_expected_status(
        self, endpoint: str, caller: str, status: int
    ) -> None:
        scene = build_scene(caller)
        spec = ENDPOINTS[endpoint]
        if spec.prepare:
            spec.prepare(scene)
        client = Client()
        if scene.user is not None:
            client.force_login(scene.user)
        before = scene.snapshot()

        response = _call(client, spec, scene)

        assert response.status_code == status, response.content[:300]
        login = response.status_code == 302 and response["Location"].startswith("/login/")
        assert login == (caller == "anonymous"), response.get("Location")
        body = response.content.decode()
        if caller not in SEES_THE_CHAT:
            # Refused, or a list that must not show a colleague's chat.
            assert PRIVATE_TEXT not in body and scene.conversation.chat_id not in body
        if login or status in (403, 404) or spec.method == "get":
            assert scene.snapshot() == before, "a refused call or a page view changed data"
        elif spec.done is not None:
            assert spec.done(scene), "the allowed call had no effect"
        if endpoint in ("inbox", "unread_json") and status == 200:
            visible = caller in SEES_THE_CHAT
            if endpoint == "inbox":
                assert (scene.conversation.chat_id in body) == visible
            else:
                assert response.json()["unread"] == (1 if visible else 0)

    @pytest.mark.django_db(transaction=True)
    @pytest.mark.parametrize(("caller", "expected"), SOCKET_CELLS)
    async def test_the_agent_socket_answers_each_caller(
        self, caller: str, expected: int | str
    ) -> None:
        scene = await sync_to_async(build_scene)(caller)
        headers = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
        if scene.user is not None:
            cookie = await sync_to_async(session_cookie)(scene.user)
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        comm = WebsocketCommunicator(application, "/crm/chat/ws", headers=headers)
        connected, _ = await comm.connect()
        assert connected  # accepted first, so a refusal can say why before closing
        frames: list[dict] = []
        try:
            if isinstance(expected, int):
                frames.append(await comm.receive_json_from(timeout=3))
                assert frames[-1]["type"] == "error"
                assert await comm.receive_output(timeout=3) == {
                    "type": "websocket.close",
                    "code": expected,
                }
            else:
                frames.append(await comm.receive_json_from(timeout=3))
                assert frames[-1]["type"] == "ready"
                await comm.send_json_to(
                    {"type": "subscribe", "conversation": scene.conv_id, "since": 0}
                )
                while frames[-1]["type"] not in ("subscribed", "error"):
                    frames.append(await comm.receive_json_from(timeout=3))
                assert frames[-1]["type"] == expected, frames
                # A live message in the chat reaches only agents who may see it.
                await sync_to_async(chat_service.send_visitor_message)(
                    conversation=scene.conversation,
                    visitor=await ChatVisitor.objects.aget(pk=scene.conversation.visitor_id),
                    body="live secret",
                )
                live = await _frames_for(comm, 1.0)
                frames.extend(live)
                heard = any(f.get("message", {}).get("body") == "live secret" for f in live)
                assert heard == (caller in SEES_THE_CHAT), live
        finally:
            await comm.disconnect()
        said = json.dumps(frames)
        assert (PRIVATE_TEXT in said) == (caller in SEES_THE_CHAT), frames

    def test_it_covers_every_endpoint_and_caller(self) -> None:
        assert len(ENDPOINTS) == len(EXPECTED) == 25
        assert len(HTTP_CELLS) + len(SOCKET_CELLS) == (25 + 1) * len(CALLERS) == 156


async def _frames_for(comm: WebsocketCommunicator, seconds: float) -> list[dict]:
    """Every frame that arrives within ``seconds`` (waiting never cancels the consumer)."""
    frames: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if not await comm.receive_nothing(timeout=0.05):
            frames.append(await comm.receive_json_from(timeout=1))
    return frames


POSTS = [name for name, spec in ENDPOINTS.items() if spec.method != "get"]


class CsrfTests:
    @pytest.mark.django_db
    @pytest.mark.parametrize("endpoint", POSTS)
    def test_every_agent_write_needs_the_csrf_token(self, endpoint: str) -> None:
        """Agents act through their session cookie, so a forged cross-site POST must fail."""
        scene = build_scene("owner")
        spec = ENDPOINTS[endpoint]
        if spec.prepare:
            spec.prepare(scene)
        client = Client(enforce_csrf_checks=True)
        client.force_login(scene.world.owner)
        before = scene.snapshot()

        response = _call(client, spec, scene)

        assert response.status_code == 403
        assert scene.snapshot() == before


class AgentJsonInputTests:
    @pytest.mark.django_db
    @pytest.mark.parametrize(
        ("endpoint", "raw"),
        [
            ("send_json", '{"body": "a\\ud800b"}'),
            ("send_json", '{"body": "ok", "client_id": "\\udfff"}'),
            ("send_json", '{"body": "a\\u0000b"}'),
            ("send_json", b'{"body": "\xff\xfe"}'),
            ("read_json", '{"up_to_seq": "\\ud800"}'),
            ("read_json", '{"up_to_seq": 1e400}'),
        ],
    )
    def test_undecodable_or_unstorable_text_is_refused_not_a_500(
        self, endpoint: str, raw: str | bytes
    ) -> None:
        """Lone surrogates decode in Python's json but can't be stored (was a 500)."""
        scene = build_scene("owner")
        client = Client()
        client.force_login(scene.world.owner)
        before = scene.snapshot()

        response = client.post(ENDPOINTS[endpoint].url(scene), raw, content_type="application/json")

        assert response.status_code in (400, 422), response.content
        assert scene.snapshot() == before
