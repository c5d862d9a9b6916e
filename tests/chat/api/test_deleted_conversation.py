"""A chat an agent deleted is gone from the widget's API, and back once restored."""

from __future__ import annotations

import pytest

from crm.chat.models import ChatConversation, ChatMessage
from tests.chat.api.conftest import SHOP, PublicApi, assert_error
from tests.chat.conftest import ChatWorld


@pytest.fixture
def deleted(world: ChatWorld) -> ChatConversation:
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hello")
    world.service.delete_conversation(conversation=conv, by=world.owner)
    return conv


class DeletedConversationApiTests:
    def test_identify_no_longer_offers_it(self, world: ChatWorld, public: PublicApi, deleted):
        response = public.identify(token=world.token, origin=SHOP)
        assert response.status_code == 200, response.content
        assert (response.json()["conversation"], response.json()["messages"]) == (None, [])

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("get", "/messages", None),
            ("post", "/messages", {"body": "anyone there?"}),
            ("post", "/read", {}),
        ],
    )
    def test_its_operations_answer_404_and_write_nothing(
        self, world: ChatWorld, public: PublicApi, deleted, method, path, body
    ):
        before = list(ChatMessage.objects.values_list("pk", "read_at"))
        url = f"/conversations/{deleted.external_id}{path}"
        response = public.call(method, url, body, token=world.token, origin=SHOP)
        error = assert_error(response, 404)
        assert "hello" not in error["message"]
        assert list(ChatMessage.objects.values_list("pk", "read_at")) == before

    def test_opening_a_chat_starts_a_new_one(self, world: ChatWorld, public: PublicApi, deleted):
        response = public.call("post", "/conversations", {}, token=world.token, origin=SHOP)
        assert response.status_code in (200, 201), response.content
        assert response.json()["conversation"]["id"] != str(deleted.external_id)
        assert ChatConversation.objects.filter(deleted_at__isnull=True).count() == 1

    def test_a_restored_chat_is_offered_again_with_its_history(
        self, world: ChatWorld, public: PublicApi, deleted
    ):
        world.service.restore_conversation(conversation=deleted, by=world.owner)
        response = public.identify(token=world.token, origin=SHOP)
        assert response.json()["conversation"]["id"] == str(deleted.external_id)
        # The delete and restore notes are internal: the visitor sees only the chat.
        assert [m["body"] for m in response.json()["messages"]] == ["hello"]
