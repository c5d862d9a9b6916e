"""A socket's replay and the live stream never deliver the same message twice.

Found by the soak: a message committed between the replay reading the
conversation's last seq and reading its rows was sent by the replay, counted as
not yet delivered, and sent again when its live event arrived.
"""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from crm.asgi import application
from crm.chat import selectors
from crm.chat.realtime import stream
from tests.chat.conftest import ChatWorld, make_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tworld(transactional_db: None) -> ChatWorld:
    return make_world()


async def test_a_message_committed_during_a_replay_is_sent_once(tworld: ChatWorld) -> None:
    conv = await sync_to_async(tworld.conversation)()
    await sync_to_async(tworld.service.send_visitor_message)(
        conversation=conv, visitor=tworld.visitor, body="one", client_id="v1"
    )
    rows = selectors.messages_since
    raced: list[int] = []

    def racing_rows(**kwargs):  # type: ignore[no-untyped-def]
        if not raced:  # an agent's reply commits between the two reads of the replay
            raced.append(1)
            tworld.service.send_agent_message(
                conversation=conv, agent=tworld.owner, body="two", client_id="a1"
            )
        return rows(**kwargs)

    comm = WebsocketCommunicator(
        application,
        f"/p/chat/{tworld.widget.public_key}/ws",
        headers=[(b"host", b"testserver"), (b"origin", b"https://shop.example")],
    )
    connected, _ = await comm.connect()
    assert connected
    with mock.patch.object(stream.selectors, "messages_since", racing_rows):
        await comm.send_json_to(
            {"type": "auth", "token": tworld.token, "conversation": str(conv.external_id),
             "since": 0}
        )  # fmt: skip
        frames = []
        for _ in range(50):  # bounded: the replay, "synced", "ready" and the live events
            frame = await comm.receive_json_from(timeout=3)
            frames.append(frame)
            if frame["type"] == "ready":
                break
        # The reply's live events (assignment, message) arrive after "ready".
        while await comm.receive_nothing(timeout=0.5) is False:
            frames.append(await comm.receive_json_from(timeout=3))
    await comm.disconnect()
    seqs = [f["seq"] for f in frames if f["type"] == "message"]
    assert raced and seqs == sorted(set(seqs)), seqs  # each once, in order
    assert seqs[-1] >= 2
