"""The inbox JSON endpoints of the polling fallback, and bad input to them."""

from __future__ import annotations

import pytest
from django.test import Client

from crm.chat.models import ChatMessage
from crm.chat.services import chat_service
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import (
    UNREAD,
    action_url,
    bodies,
    flashes,
    messages_url,
    new_chat,
    post_json,
    read_url,
    send_url,
    show_url,
    visitor_says,
)

pytestmark = pytest.mark.django_db


class JsonEndpointTests:
    def test_messages_since_returns_only_newer_messages_with_internal_notes(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="one")
        visitor_says(conv, "two")
        chat_service.send_system_message(conversation=conv, body="note", internal=True)

        data = owner.get(messages_url(conv), {"since": "1"}).json()

        assert [(m["seq"], m["body"], m["internal"]) for m in data["messages"]] == [
            (2, "two", False),
            (3, "note", True),
        ]
        assert data["status"] == "open" and data["last_seq"] == 3
        assert data["visitor_read_up_to"] == 0
        assert owner.get(messages_url(conv), {"since": "3"}).json()["messages"] == []
        assert len(owner.get(messages_url(conv)).json()["messages"]) == 3
        bad = owner.get(messages_url(conv), {"since": "x"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid"

    def test_send_is_idempotent_by_client_id(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")

        first = post_json(owner, send_url(conv), {"body": " Hello! ", "client_id": "a1"})
        again = post_json(owner, send_url(conv), {"body": " Hello! ", "client_id": "a1"})

        assert first.status_code == 201 and again.status_code == 201
        assert first.json()["message"] == again.json()["message"]
        message = first.json()["message"]
        assert message["body"] == "Hello!" and message["sender_type"] == "user"
        assert message["sender_name"] == "Olivia" and message["client_id"] == "a1"
        assert bodies(conv, sender_type="user") == ["Hello!"]
        conv.refresh_from_db()
        assert conv.user_assigned_id == world.owner.pk  # replying picks the chat up
        other = post_json(owner, send_url(conv), {"body": "Hello!", "client_id": "a2"})
        assert other.json()["message"]["seq"] == message["seq"] + 1

    def test_send_to_a_closed_chat_is_refused(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        chat_service.close_conversation(conversation=conv, by=world.owner)
        response = post_json(owner, send_url(conv), {"body": "late"})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conversation_closed"
        assert "late" not in bodies(conv)

    def test_read_marks_visitor_messages_read(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="one")
        visitor_says(conv, "two")
        visitor_says(conv, "three")

        partly = post_json(owner, read_url(conv), {"up_to_seq": 2})
        rest = post_json(owner, read_url(conv), {})

        assert partly.json() == {"updated": 2} and rest.json() == {"updated": 1}
        assert not ChatMessage.objects.filter(conversation=conv, read_at__isnull=True).exists()
        assert post_json(owner, read_url(conv), {}).json() == {"updated": 0}

    def test_unread_counts_visible_open_chats(self, world: ChatWorld, employee: Client) -> None:
        new_chat(world.widget, says="one")
        theirs = new_chat(world.widget, says="two")
        chat_service.assign_conversation(conversation=theirs, agent=world.owner, by=world.owner)
        closed = new_chat(world.widget, says="three")
        chat_service.close_conversation(conversation=closed, by=world.owner)

        first = employee.get(UNREAD).json()
        new_chat(world.widget, says="four")
        second = employee.get(UNREAD).json()

        assert first["unread"] == 1 and second["unread"] == 2
        assert first["latest"] != second["latest"]  # the list's freshness marker moved


class BadInputTests:
    @pytest.mark.parametrize("body", ["", "{}", '{"body": "   "}', '{"body": 5}'])
    def test_an_empty_or_non_text_message_is_422(
        self, world: ChatWorld, owner: Client, body: str
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        response = post_json(owner, send_url(conv), body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid"
        assert response.json()["error"]["message"]
        assert bodies(conv) == ["hi"]

    @pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"text"'])
    def test_malformed_json_is_400(self, world: ChatWorld, owner: Client, body: str) -> None:
        conv = new_chat(world.widget, says="hi")
        for url in (send_url(conv), read_url(conv)):
            response = post_json(owner, url, body)
            assert response.status_code == 400, url
            assert response.json() == {
                "error": {"code": "bad_request", "message": "Send a JSON object."}
            }
        assert bodies(conv) == ["hi"]

    @pytest.mark.parametrize("up_to", ["-1", '"soon"', "null", "[3]", "1e400"])
    def test_a_bad_read_position_is_422(self, world: ChatWorld, owner: Client, up_to: str) -> None:
        conv = new_chat(world.widget, says="hi")
        response = post_json(owner, read_url(conv), f'{{"up_to_seq": {up_to}}}')
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid"
        assert ChatMessage.objects.get(conversation=conv).read_at is None

    def test_huge_positions_are_harmless(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        huge = 10**30
        since = owner.get(messages_url(conv), {"since": str(huge)})
        assert since.status_code == 200 and since.json()["messages"] == []
        read = post_json(owner, read_url(conv), {"up_to_seq": huge})
        assert (read.status_code, read.json()) == (200, {"updated": 1})
        assert ChatMessage.objects.get(conversation=conv).read_at is not None

    def test_a_bad_client_id_is_422(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        response = post_json(owner, send_url(conv), {"body": "x", "client_id": "no spaces!"})
        assert response.status_code == 422
        assert bodies(conv) == ["hi"]

    def test_an_unknown_action_is_404(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        assert owner.post(action_url(conv, "explode")).status_code == 404
        assert bodies(conv) == ["hi"]

    @pytest.mark.parametrize(
        ("agent", "flash"),
        [("999999", "error: Choose an active agent."), ("abc", "error: That value is not valid.")],
    )
    def test_assigning_to_no_real_agent_is_refused(
        self, world: ChatWorld, owner: Client, agent: str, flash: str
    ) -> None:
        conv = new_chat(world.widget, says="hi")

        response = owner.post(action_url(conv, "assign"), {"agent": agent})

        assert response.status_code == 302 and response["Location"] == show_url(conv)
        assert flashes(owner, response) == [flash]
        conv.refresh_from_db()
        assert conv.user_assigned_id is None
        assert bodies(conv) == ["hi"]
