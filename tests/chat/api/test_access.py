"""Who may call what: every operation against every kind of caller, one cell per test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatVisitorPageView
from crm.chat.services import chat_service
from tests.chat.api.conftest import EVIL, SHOP, PublicApi, assert_error, new_visitor
from tests.chat.conftest import ChatWorld

CALLERS = (
    "own_visitor",
    "other_visitor_same_widget",
    "visitor_of_another_widget",
    "no_token",
    "forged_token",
    "inactive_widget",
    "disallowed_origin",
)
# (method, path, body); {conv} is the own visitor's conversation.
OPERATIONS = {
    "identify": ("post", "/visitor", {}),
    "update_visitor": ("patch", "/visitor", {"name": "Mallory"}),
    "open_conversation": ("post", "/conversations", {}),
    "list_messages": ("get", "/conversations/{conv}/messages?since=0", None),
    "send_message": ("post", "/conversations/{conv}/messages", {"body": "Injected text"}),
    "mark_read": ("post", "/conversations/{conv}/read", {}),
    "record_page_view": ("post", "/page-views", {"url": f"{SHOP}/injected"}),
}
# Expected status per operation, in CALLERS order. Another visitor of the same widget
# may act on their own record (identify, update, open, page views) but gets 404 for
# the own visitor's conversation id. "identify" without a token creates a visitor.
EXPECTED = {
    "identify": (200, 200, 401, 201, 401, 404, 403),
    "update_visitor": (200, 200, 401, 401, 401, 404, 403),
    "open_conversation": (200, 201, 401, 401, 401, 404, 403),
    "list_messages": (200, 404, 401, 401, 401, 404, 403),
    "send_message": (201, 404, 401, 401, 401, 404, 403),
    "mark_read": (200, 404, 401, 401, 401, 404, 403),
    "record_page_view": (200, 200, 401, 401, 401, 404, 403),
}
CODES = {401: ("missing_token", "invalid_token"), 403: ("origin_not_allowed",)}
CELLS = [
    pytest.param(op, caller, EXPECTED[op][i], id=f"{op}-{caller}-{EXPECTED[op][i]}")
    for op in OPERATIONS
    for i, caller in enumerate(CALLERS)
]
PRIVATE_TEXT = "my order number is 4471"
AGENT_TEXT = "Your refund is on its way"


@dataclass
class Scene:
    world: ChatWorld
    public: PublicApi
    conversation: ChatConversation
    intruder: ChatVisitor
    intruder_token: str

    def request(self, operation: str, caller: str):  # type: ignore[no-untyped-def]
        method, path, body = OPERATIONS[operation]
        path = path.replace("{conv}", str(self.conversation.external_id))
        token: str | None = self.world.token
        origin = SHOP
        if caller == "other_visitor_same_widget":
            token = self.intruder_token
        elif caller == "visitor_of_another_widget":
            token = self.world.other_token
        elif caller == "no_token":
            token = None
        elif caller == "forged_token":
            token = self.world.token[:-4] + "AAAA"
        elif caller == "inactive_widget":
            chat_service.update_widget(widget=self.world.widget, is_active=False)
        elif caller == "disallowed_origin":
            origin = EVIL
        return self.public.call(method, path, body, token=token, origin=origin)

    def snapshot(self) -> tuple:
        """Everything a refused request must leave as it was."""
        visitor = ChatVisitor.objects.get(pk=self.world.visitor.pk)
        return (
            visitor.name,
            visitor.current_url,
            ChatVisitor.objects.count(),
            ChatConversation.objects.count(),
            list(ChatMessage.objects.order_by("pk").values_list("pk", "body", "read_at")),
            ChatVisitorPageView.objects.count(),
        )


@pytest.fixture
def scene(world: ChatWorld, public: PublicApi) -> Scene:
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body=PRIVATE_TEXT)
    world.service.send_agent_message(conversation=conv, agent=world.owner, body=AGENT_TEXT)
    intruder, intruder_token = new_visitor(world.widget)
    return Scene(world, public, conv, intruder, intruder_token)


class AccessMatrixTests:
    @pytest.mark.parametrize(("operation", "caller", "status"), CELLS)
    def test_it_answers_each_caller_with_the_expected_status(
        self, scene: Scene, operation: str, caller: str, status: int
    ):
        before = scene.snapshot()
        response = scene.request(operation, caller)
        assert response.status_code == status, response.content
        if status >= 400:
            error = assert_error(response, status)
            if status in CODES:
                assert error["code"] in CODES[status]
            assert scene.snapshot() == before, "a refused request changed data"
        if caller != "own_visitor":
            # Nobody but the owner ever sees the conversation or its messages.
            for secret in (PRIVATE_TEXT, AGENT_TEXT, scene.conversation.chat_id):
                assert secret.encode() not in response.content
            assert str(scene.conversation.external_id).encode() not in response.content
        if caller == "other_visitor_same_widget" and status < 400:
            # Allowed calls act on the intruder's own record, never on the owner's.
            visitor = ChatVisitor.objects.get(pk=scene.world.visitor.pk)
            assert (visitor.name, visitor.current_url) == ("", "")

    def test_it_covers_every_operation_and_caller(self):
        assert len(CELLS) == len(OPERATIONS) * len(CALLERS) == 49

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [("get", "messages", None), ("post", "messages", {"body": "x"}), ("post", "read", {})],
    )
    def test_it_answers_another_visitors_conversation_like_a_missing_one(
        self, scene: Scene, method: str, suffix: str, body: dict | None
    ):
        """The answer must not reveal that the id exists (no oracle for ids)."""
        theirs = scene.public.call(
            method,
            f"/conversations/{scene.conversation.external_id}/{suffix}",
            body,
            token=scene.intruder_token,
        )
        missing = scene.public.call(
            method, f"/conversations/{uuid.uuid4()}/{suffix}", body, token=scene.intruder_token
        )
        assert_error(theirs, 404, "not_found")
        assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())

    def test_it_refuses_the_own_token_on_another_widget(self, scene: Scene, client):  # type: ignore[no-untyped-def]
        other = PublicApi(client, scene.world.other_widget.public_key)
        path = f"/conversations/{scene.conversation.external_id}/messages"
        assert_error(other.call("get", path, token=scene.world.token), 401, "invalid_token")
        assert_error(other.identify(token=scene.world.token), 401, "invalid_token")
