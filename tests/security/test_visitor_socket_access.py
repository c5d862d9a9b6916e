"""Who may use the visitor WebSocket: the public API's caller matrix, over the socket.

Each cell opens ``/p/chat/<key>/ws`` through the real ASGI application and tries to
join the own visitor's conversation. Only that visitor gets its history, its live
messages and a working send; everyone else gets the documented close code, sees
nothing of the conversation and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from crm.asgi import application
from crm.chat.models import ChatConversation, ChatMessage
from crm.chat.services import chat_service
from tests.chat.conftest import ChatWorld, make_world
from tests.security.test_agent_access import _frames_for

pytestmark = pytest.mark.django_db(transaction=True)

SHOP, EVIL = "https://shop.example", "https://evil.example"
PRIVATE_TEXT = "my order number is 4471"
AGENT_TEXT = "Your refund is on its way"
# caller -> (close code, error code); None means the socket works.
EXPECTED: dict[str, tuple[int, str] | None] = {
    "own_visitor": None,
    "other_visitor_same_widget": (4401, "invalid_token"),
    "visitor_of_another_widget": (4401, "invalid_token"),
    "no_token": (4400, "bad_frame"),
    "forged_token": (4401, "invalid_token"),
    "inactive_widget": (4404, "unknown_widget"),
    "disallowed_origin": (4403, "origin_not_allowed"),
    "send_before_auth": (4401, "not_authenticated"),
}
REFUSED_ON_CONNECT = {"inactive_widget", "disallowed_origin"}


@dataclass
class Scene:
    world: ChatWorld
    conversation: ChatConversation
    intruder_token: str

    def first_frame(self, caller: str) -> dict[str, Any]:
        conv = str(self.conversation.external_id)
        token = {
            "other_visitor_same_widget": self.intruder_token,
            "visitor_of_another_widget": self.world.other_token,
            "forged_token": self.world.token[:-4] + "AAAA",
        }.get(caller, self.world.token)
        if caller == "no_token":
            return {"type": "auth", "conversation": conv, "since": 0}
        if caller == "send_before_auth":
            return {"type": "send", "body": "Injected text", "client_id": "x-1"}
        return {"type": "auth", "token": token, "conversation": conv, "since": 0}

    def snapshot(self) -> list:
        return list(ChatMessage.objects.order_by("pk").values_list("pk", "body", "read_at"))


def _scene() -> Scene:
    world = make_world()
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body=PRIVATE_TEXT)
    world.service.send_agent_message(conversation=conv, agent=world.owner, body=AGENT_TEXT)
    _, intruder_token = chat_service.identify_visitor(widget=world.widget, token=None)
    assert intruder_token
    return Scene(world, conv, intruder_token)


class VisitorSocketMatrixTests:
    @pytest.mark.parametrize("caller", list(EXPECTED))
    async def test_it_answers_each_caller(self, caller: str) -> None:
        scene = await sync_to_async(_scene)()
        if caller == "inactive_widget":
            await sync_to_async(chat_service.update_widget)(
                widget=scene.world.widget, is_active=False
            )
        before = await sync_to_async(scene.snapshot)()
        origin = EVIL if caller == "disallowed_origin" else SHOP
        comm = WebsocketCommunicator(
            application,
            f"/p/chat/{scene.world.widget.public_key}/ws",
            headers=[(b"host", b"testserver"), (b"origin", origin.encode())],
        )
        connected, _ = await comm.connect()
        assert connected
        frames: list[dict] = []
        try:
            if caller not in REFUSED_ON_CONNECT:
                await comm.send_json_to(scene.first_frame(caller))
            expected = EXPECTED[caller]
            if expected is None:
                frames = await _until(comm, "ready")
                await comm.send_json_to({"type": "send", "body": "Hello", "client_id": "c-1"})
                frames += await _until(comm, "ack")
                await sync_to_async(chat_service.send_agent_message)(
                    conversation=scene.conversation, agent=scene.world.owner, body="live reply"
                )
                while frames[-1].get("message", {}).get("body") != "live reply":
                    frames.append(await comm.receive_json_from(timeout=3))
            else:
                frames.append(await comm.receive_json_from(timeout=3))
                assert (frames[0]["type"], frames[0]["code"]) == ("error", expected[1])
                closing = await comm.receive_output(timeout=3)
                assert closing == {"type": "websocket.close", "code": expected[0]}
                # Whatever happens in the conversation now never reaches this socket.
                await sync_to_async(chat_service.send_agent_message)(
                    conversation=scene.conversation, agent=scene.world.owner, body="live reply"
                )
                frames += await _frames_for(comm, 0.5)
        finally:
            await comm.disconnect()

        said = json.dumps(frames)
        owner = expected is None
        for secret in (PRIVATE_TEXT, AGENT_TEXT, "live reply", scene.conversation.chat_id):
            assert (secret in said) == owner, (secret, frames)
        after = await sync_to_async(scene.snapshot)()
        if owner:
            assert [b for _, b, _ in after] == [PRIVATE_TEXT, "Olivia joined the chat.",
                                                AGENT_TEXT, "Hello", "live reply"]  # fmt: skip
        else:
            assert after[: len(before)] == before and [b for _, b, _ in after[len(before) :]] == [
                "live reply"
            ]

    def test_it_covers_the_public_api_callers(self) -> None:
        from tests.chat.api.test_access import CALLERS

        assert set(CALLERS) <= set(EXPECTED)
        assert len(EXPECTED) == 8


async def _until(comm: WebsocketCommunicator, kind: str) -> list[dict]:
    frames = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(await comm.receive_json_from(timeout=3))
    return frames
