"""A deleted widget answers everywhere as an unknown one, and serves again when restored.

The loader, the iframe page, every JSON API operation and a new visitor socket all
resolve the widget through ``selectors.widget_by_public_key``.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from crm.asgi import application
from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatVisitorPageView
from crm.chat.services import chat_service
from tests.chat.api.conftest import SHOP, PublicApi, assert_error
from tests.chat.api.test_errors import OPERATIONS
from tests.chat.conftest import ChatWorld


def _snapshot() -> tuple[Any, ...]:
    return (
        ChatVisitor.objects.count(),
        ChatConversation.objects.count(),
        list(ChatMessage.objects.order_by("pk").values_list("pk", "body", "read_at")),
        ChatVisitorPageView.objects.count(),
    )


@pytest.fixture
def conversation(world: ChatWorld) -> ChatConversation:
    """A chat the visitor had on the widget before it was deleted."""
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hello")
    return conv


class DeletedWidgetPublicTests:
    def test_the_loader_answers_like_an_unknown_key(self, world: ChatWorld) -> None:
        chat_service.delete_widget(widget=world.widget)
        response = Client().get(f"/p/chat/{world.widget.public_key}.js")
        assert response.status_code == 404
        assert response.content.decode().strip().startswith("/*")
        assert world.widget.public_key.encode() not in response.content

    def test_the_iframe_page_answers_with_the_friendly_404(self, world: ChatWorld) -> None:
        chat_service.delete_widget(widget=world.widget)
        response = Client().get(f"/p/chat/{world.widget.public_key}")
        assert response.status_code == 404
        assert b"not available" in response.content
        assert world.widget.name.encode() not in response.content

    @pytest.mark.parametrize("name", OPERATIONS)
    def test_every_api_operation_answers_404_unknown_widget(
        self, world: ChatWorld, public: PublicApi, conversation: ChatConversation, name: str
    ) -> None:
        method, path, body = OPERATIONS[name]
        path = path.replace("{conv}", str(conversation.external_id))
        chat_service.delete_widget(widget=world.widget)
        before = _snapshot()

        response = public.call(method, path, body, token=world.token, origin=SHOP)

        error = assert_error(response, 404, "unknown_widget")
        assert "hello" not in error["message"]
        assert _snapshot() == before

    def test_the_other_widget_keeps_serving(self, world: ChatWorld) -> None:
        chat_service.delete_widget(widget=world.widget)
        assert Client().get(f"/p/chat/{world.other_widget.public_key}.js").status_code == 200
        assert Client().get(f"/p/chat/{world.other_widget.public_key}").status_code == 200

    def test_a_restored_widget_serves_again_with_the_same_key_and_history(
        self, world: ChatWorld, public: PublicApi, conversation: ChatConversation
    ) -> None:
        chat_service.delete_widget(widget=world.widget)
        chat_service.restore_widget(widget=world.widget)

        assert Client().get(f"/p/chat/{world.widget.public_key}.js").status_code == 200
        assert Client().get(f"/p/chat/{world.widget.public_key}").status_code == 200
        path = f"/conversations/{conversation.external_id}/messages"
        response = public.call("get", path, token=world.token, origin=SHOP)
        assert response.status_code == 200, response.content
        assert [m["body"] for m in response.json()["messages"]] == ["hello"]


@pytest.mark.django_db(transaction=True)
class DeletedWidgetSocketTests:
    async def test_a_new_visitor_socket_is_refused_as_unknown(self, tworld: ChatWorld) -> None:
        await sync_to_async(chat_service.delete_widget)(widget=tworld.widget)
        comm = WebsocketCommunicator(
            application,
            f"/p/chat/{tworld.widget.public_key}/ws",
            headers=[(b"host", b"testserver"), (b"origin", SHOP.encode())],
        )
        connected, _ = await comm.connect()
        assert connected  # accepted first, so the refusal can say why before closing
        error = await comm.receive_json_from(timeout=3)
        assert (error["type"], error["code"]) == ("error", "unknown_widget")
        assert await comm.receive_output(timeout=3) == {"type": "websocket.close", "code": 4404}
        await comm.disconnect()
