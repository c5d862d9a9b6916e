from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.chat.models import ChatConversation, ChatMessage
from tests.chat.api.conftest import SHOP, PublicApi, assert_error, new_visitor
from tests.chat.conftest import ChatWorld


def _agent_says(world: ChatWorld, conv: ChatConversation, *bodies: str) -> None:
    for body in bodies:
        world.service.send_agent_message(conversation=conv, agent=world.owner, body=body)


def _visitor_says(world: ChatWorld, conv: ChatConversation, *bodies: str) -> None:
    for body in bodies:
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body=body)


class OpenConversationTests:
    def test_it_opens_a_conversation_then_returns_the_same_one(
        self, world: ChatWorld, public: PublicApi
    ):
        first = public.call("post", "/conversations", {"subject": "Billing"}, token=world.token)
        assert first.status_code == 201, first.content
        conv = first.json()["conversation"]
        assert conv["status"] == "open" and conv["last_seq"] == 0 and conv["unread"] == 0
        assert conv["chat_id"].startswith("C") and first.json()["messages"] == []
        again = public.call("post", "/conversations", {}, token=world.token)
        assert again.status_code == 200, again.content
        assert again.json()["conversation"]["id"] == conv["id"]
        stored = ChatConversation.objects.get()
        assert (str(stored.external_id), stored.visitor_id, stored.subject) == (
            conv["id"],
            world.visitor.pk,
            "Billing",
        )

    def test_it_starts_a_new_conversation_after_the_old_one_closed(
        self, world: ChatWorld, public: PublicApi
    ):
        old = world.conversation()
        world.service.close_conversation(conversation=old, by=world.owner)
        response = public.call("post", "/conversations", {}, token=world.token)
        assert response.status_code == 201
        assert response.json()["conversation"]["id"] != str(old.external_id)
        assert ChatConversation.objects.filter(visitor=world.visitor).count() == 2

    def test_it_rejects_an_over_long_subject_and_opens_nothing(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.call("post", "/conversations", {"subject": "s" * 300}, token=world.token)
        assert "subject" in assert_error(response, 422)["fields"]
        assert not ChatConversation.objects.exists()

    def test_it_validates_ownership(self, world: ChatWorld, public: PublicApi):
        mine = world.conversation()
        _, intruder_token = new_visitor(world.widget)
        response = public.call("post", "/conversations", {}, token=intruder_token)
        assert response.status_code == 201
        assert response.json()["conversation"]["id"] != str(mine.external_id)


class ListMessagesTests:
    def test_it_returns_only_messages_after_since_in_seq_order(
        self, world: ChatWorld, public: PublicApi
    ):
        conv = world.conversation()
        _visitor_says(world, conv, "one", "two", "three", "four", "five")
        response = public.call("get", f"{public.messages_path(conv)}?since=2", token=world.token)
        assert response.status_code == 200, response.content
        data = response.json()
        assert [(m["seq"], m["body"]) for m in data["messages"]] == [
            (3, "three"),
            (4, "four"),
            (5, "five"),
        ]
        assert data["more"] is False
        assert data["conversation"]["id"] == str(conv.external_id)
        assert data["conversation"]["last_seq"] == 5

    @pytest.mark.parametrize("commit_after", ["messages_since", "visitor_side_state"])
    def test_its_last_seq_never_covers_a_message_it_did_not_return(
        self, world: ChatWorld, public: PublicApi, monkeypatch, commit_after: str
    ):  # type: ignore[no-untyped-def]
        """The widget moves its cursor to ``last_seq`` after a complete poll: an agent
        reply committed between the poll's two reads must be in the answer or above
        its ``last_seq``, or the widget skips it for good."""
        from crm.chat import selectors

        conv = world.conversation()
        _visitor_says(world, conv, "one")
        read = getattr(selectors, commit_after)

        def then_a_reply_commits(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = read(*args, **kwargs)
            if commit_after == "messages_since":
                result = list(result)  # evaluated before the reply commits
            monkeypatch.setattr(selectors, commit_after, read)  # once
            _agent_says(world, conv, "in between")
            return result

        monkeypatch.setattr(selectors, commit_after, then_a_reply_commits)
        data = public.call("get", f"{public.messages_path(conv)}?since=0", token=world.token).json()
        returned = {m["seq"] for m in data["messages"]}
        assert not data["more"]
        assert set(range(1, data["conversation"]["last_seq"] + 1)) <= returned

    def test_it_returns_nothing_when_the_client_is_up_to_date(
        self, world: ChatWorld, public: PublicApi
    ):
        conv = world.conversation()
        _visitor_says(world, conv, "one")
        data = public.call("get", f"{public.messages_path(conv)}?since=1", token=world.token).json()
        assert data["messages"] == [] and data["more"] is False

    def test_it_flags_more_when_the_limit_cuts_the_page(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        _visitor_says(world, conv, "1", "2", "3", "4", "5")
        path = public.messages_path(conv)
        first = public.call("get", f"{path}?since=0&limit=2", token=world.token).json()
        assert [m["seq"] for m in first["messages"]] == [1, 2] and first["more"] is True
        second = public.call("get", f"{path}?since=2&limit=3", token=world.token).json()
        assert [m["seq"] for m in second["messages"]] == [3, 4, 5] and second["more"] is False

    def test_it_skips_internal_messages(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        _visitor_says(world, conv, "hi")
        world.service.send_system_message(conversation=conv, body="secret note", internal=True)
        _visitor_says(world, conv, "still there?")
        response = public.call("get", f"{public.messages_path(conv)}?since=0", token=world.token)
        assert [m["seq"] for m in response.json()["messages"]] == [1, 3]
        assert b"secret note" not in response.content

    def test_it_polls_in_a_constant_number_of_queries(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        path = f"{public.messages_path(conv)}?since=0"

        def queries_for_a_poll() -> int:
            with CaptureQueriesContext(connection) as ctx:
                assert public.call("get", path, token=world.token).status_code == 200
            return len(ctx.captured_queries)

        _visitor_says(world, conv, "hi")
        _agent_says(world, conv, "hello")
        queries_for_a_poll()  # warm the short-lived caches (widget's agents for presence)
        few = queries_for_a_poll()
        _visitor_says(world, conv, *[f"v{i}" for i in range(20)])
        world.service.send_agent_message(conversation=conv, agent=world.employee, body="me too")
        _agent_says(world, conv, *[f"a{i}" for i in range(20)])
        assert queries_for_a_poll() == few  # no query per message or per agent

    @pytest.mark.parametrize("query", ["since=-1", "since=0&limit=0", "since=0&limit=501"])
    def test_it_refuses_out_of_range_paging(self, world: ChatWorld, public: PublicApi, query: str):
        conv = world.conversation()
        response = public.call("get", f"{public.messages_path(conv)}?{query}", token=world.token)
        assert "since" in assert_error(response, 422)["fields"]

    def test_it_refuses_a_non_integer_since(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        response = public.call("get", f"{public.messages_path(conv)}?since=abc", token=world.token)
        assert "since" in assert_error(response, 422, "invalid_request")["fields"]

    def test_it_answers_404_for_an_unknown_conversation(self, world: ChatWorld, public: PublicApi):
        path = f"/conversations/{uuid.uuid4()}/messages"
        assert_error(public.call("get", path, token=world.token), 404, "not_found")

    def test_it_validates_ownership(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        _visitor_says(world, conv, "my private question")
        _, intruder_token = new_visitor(world.widget)
        response = public.call("get", public.messages_path(conv), token=intruder_token)
        assert_error(response, 404, "not_found")
        assert b"my private question" not in response.content
        assert conv.chat_id.encode() not in response.content


class SendMessageTests:
    def test_it_stores_the_message_and_answers_201(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        response = public.call(
            "post",
            public.messages_path(conv),
            {"body": "  Hello there  ", "client_id": "c-1"},
            token=world.token,
            origin=SHOP,
        )
        assert response.status_code == 201, response.content
        data = response.json()
        assert data["duplicate"] is False
        assert data["message"]["seq"] == 1 and data["message"]["body"] == "Hello there"
        assert data["message"]["sender_type"] == "visitor"
        assert data["message"]["client_id"] == "c-1"
        assert data["conversation"]["last_seq"] == 1
        stored = ChatMessage.objects.get()
        assert (stored.conversation_id, stored.sender_id, stored.body) == (
            conv.pk,
            world.visitor.pk,
            "Hello there",
        )

    def test_it_answers_a_retry_with_the_same_client_id_as_a_duplicate(
        self, world: ChatWorld, public: PublicApi
    ):
        conv = world.conversation()
        payload = {"body": "Hello", "client_id": "retry-1"}
        first = public.call("post", public.messages_path(conv), payload, token=world.token)
        again = public.call("post", public.messages_path(conv), payload, token=world.token)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["duplicate"] is True
        assert again.json()["message"]["id"] == first.json()["message"]["id"]
        assert ChatMessage.objects.count() == 1
        conv.refresh_from_db()
        assert conv.last_seq == 1

    def test_it_accepts_a_body_of_exactly_the_maximum_length(
        self, world: ChatWorld, public: PublicApi
    ):
        conv = world.conversation()
        response = public.call(
            "post", public.messages_path(conv), {"body": "x" * 5000}, token=world.token
        )
        assert response.status_code == 201
        assert len(ChatMessage.objects.get().body) == 5000

    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param({"body": ""}, id="empty"),
            pytest.param({"body": "  \n\t "}, id="blank"),
            pytest.param({"body": "x" * 5001}, id="over-5000"),
            pytest.param({"body": "x" * 20_001}, id="over-schema-cap"),
            pytest.param({"body": "a\x00b"}, id="nul"),
            pytest.param({"body": "ok", "client_id": "bad id!"}, id="bad-client-id"),
            pytest.param({"body": "ok", "client_id": "c" * 65}, id="long-client-id"),
            pytest.param({}, id="missing-body"),
        ],
    )
    def test_it_rejects_bad_input_and_writes_nothing(
        self, world: ChatWorld, public: PublicApi, payload: dict
    ):
        conv = world.conversation()
        response = public.call("post", public.messages_path(conv), payload, token=world.token)
        error = assert_error(response, 422)
        assert set(error["fields"]) & {"body", "client_id"}, error
        assert not ChatMessage.objects.exists()
        conv.refresh_from_db()
        assert conv.last_seq == 0

    def test_it_says_how_long_a_message_may_be(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        response = public.call(
            "post", public.messages_path(conv), {"body": "y" * 5001}, token=world.token
        )
        error = assert_error(response, 422)
        assert "5000" in error["fields"]["body"][0]

    def test_it_reopens_a_closed_conversation(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        world.service.close_conversation(conversation=conv, by=world.owner)
        response = public.call(
            "post", public.messages_path(conv), {"body": "Back again"}, token=world.token
        )
        assert response.status_code == 201
        assert response.json()["conversation"]["status"] == "open"

    def test_it_validates_ownership(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        _, intruder_token = new_visitor(world.widget)
        response = public.call(
            "post", public.messages_path(conv), {"body": "Injected"}, token=intruder_token
        )
        assert_error(response, 404, "not_found")
        assert not ChatMessage.objects.exists()


class MarkReadTests:
    def test_it_marks_agent_messages_read_and_returns_the_count(
        self, world: ChatWorld, public: PublicApi
    ):
        conv = world.conversation()
        _visitor_says(world, conv, "Question")
        _agent_says(world, conv, "Answer 1", "Answer 2")
        path = f"/conversations/{conv.external_id}/read"
        response = public.call("post", path, {}, token=world.token)
        assert response.status_code == 200, response.content
        assert response.json() == {"updated": 2}
        read = dict(ChatMessage.objects.values_list("body", "read_at"))
        assert read["Answer 1"] is not None and read["Answer 2"] is not None
        assert read["Question"] is None  # the visitor's own message is the agent's to read
        assert public.call("post", path, {}, token=world.token).json() == {"updated": 0}
        assert public.identify(token=world.token).json()["conversation"]["unread"] == 0

    def test_it_marks_only_up_to_the_given_seq(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        _agent_says(world, conv, "first", "second")  # seqs: 1 joined, 2 first, 3 second
        path = f"/conversations/{conv.external_id}/read"
        assert public.call("post", path, {"up_to_seq": 2}, token=world.token).json() == {
            "updated": 1
        }
        unread = ChatMessage.objects.filter(sender_type="user", read_at__isnull=True)
        assert list(unread.values_list("body", flat=True)) == ["second"]

    def test_it_validates_ownership(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        _agent_says(world, conv, "For the visitor")
        _, intruder_token = new_visitor(world.widget)
        path = f"/conversations/{conv.external_id}/read"
        assert_error(public.call("post", path, {}, token=intruder_token), 404, "not_found")
        assert not ChatMessage.objects.filter(read_at__isnull=False).exists()
