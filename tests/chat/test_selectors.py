from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.chat import inbox_list, selectors
from crm.chat.models import ChatConversation
from crm.core.services import create_agent
from tests.chat.conftest import ChatWorld


def _visitor_chat(world: ChatWorld, *, name: str = "", body: str = "hello") -> ChatConversation:
    visitor, _ = world.service.identify_visitor(widget=world.widget, token=None)
    if name:
        world.service.update_visitor_details(visitor=visitor, name=name)
    conv = world.service.open_conversation(visitor=visitor)
    world.service.send_visitor_message(conversation=conv, visitor=visitor, body=body)
    return conv


def _list_queries(world: ChatWorld) -> int:
    with CaptureQueriesContext(connection) as ctx:
        page = inbox_list.inbox_page(
            selectors.conversation_list(agent=world.owner), number=1, per_page=50
        )
        assert all(row.preview for row in page.rows)
    return len(ctx.captured_queries)


class ConversationListTests:
    def test_it_costs_the_same_queries_for_2_and_30_conversations(self, world: ChatWorld):
        for _ in range(2):
            _visitor_chat(world)
        small = _list_queries(world)
        for _ in range(28):
            _visitor_chat(world)
        world.owner = type(world.owner).objects.get(pk=world.owner.pk)  # fresh perm cache
        assert _list_queries(world) == small <= 3

    def test_it_counts_unread_visitor_messages(self, world: ChatWorld):
        conv = _visitor_chat(world)
        world.service.send_visitor_message(conversation=conv, visitor=conv.visitor, body="again")
        world.service.mark_read(conversation=conv, reader="user", up_to_seq=1)
        (row,) = selectors.conversation_list(agent=world.owner)
        assert row.unread_count == 1

    def test_it_orders_by_latest_activity_and_filters_by_status(self, world: ChatWorld):
        a = _visitor_chat(world)
        b = _visitor_chat(world)
        world.service.send_visitor_message(conversation=a, visitor=a.visitor, body="latest")
        assert [c.pk for c in selectors.conversation_list(agent=world.owner)] == [a.pk, b.pk]
        world.service.close_conversation(conversation=b, by=world.owner)
        assert [c.pk for c in selectors.conversation_list(agent=world.owner)] == [a.pk]
        closed = selectors.conversation_list(agent=world.owner, status="closed")
        assert [c.pk for c in closed] == [b.pk]

    @pytest.mark.parametrize(
        ("term", "expected"), [("Zed", 0), ("c1002", 1), ("refund", 2), ("nothing", None)]
    )
    def test_search_matches_name_chat_id_and_message_text(self, world, term, expected):
        chats = [
            _visitor_chat(world, name="Zed Alpha"),
            _visitor_chat(world, name="Bo"),
            _visitor_chat(world, body="I want a refund"),
        ]
        found = [c.pk for c in selectors.conversation_list(agent=world.owner, search=term)]
        assert found == ([] if expected is None else [chats[expected].pk])

    def test_search_does_not_escape_the_status_tab(self, world: ChatWorld):
        conv = _visitor_chat(world)
        world.service.close_conversation(conversation=conv, by=world.owner)
        assert not selectors.conversation_list(agent=world.owner, search=conv.chat_id).exists()

    def test_agents_without_view_all_see_unassigned_and_their_own(self, world: ChatWorld):
        mine, theirs, free = (_visitor_chat(world) for _ in range(3))
        world.service.assign_conversation(conversation=mine, agent=world.employee, by=world.owner)
        world.service.assign_conversation(conversation=theirs, agent=world.owner, by=world.owner)
        seen = {c.pk for c in selectors.conversation_list(agent=world.employee)}
        assert seen == {mine.pk, free.pk}
        mine_only = selectors.conversation_list(agent=world.employee, assigned="me")
        assert [c.pk for c in mine_only] == [mine.pk]
        assert (
            selectors.conversation_get(agent=world.employee, external_id=theirs.external_id) is None
        )
        nobody = create_agent(username="nobody", password="x", role="Employee", validate=False)
        nobody.groups.clear()
        assert not selectors.conversation_list(agent=nobody).exists()


@pytest.mark.django_db
def test_status_counts_stop_at_the_cap(world: ChatWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "STATUS_COUNT_CAP", 2)
    for i in range(4):
        _visitor_chat(world, name=f"V{i}")

    assert selectors.status_counts(agent=world.owner) == {"open": 3, "pending": 0, "closed": 0}


@pytest.mark.django_db
def test_status_counts_are_per_status_and_per_agent_in_one_query(
    world: ChatWorld, django_assert_num_queries
) -> None:  # type: ignore[no-untyped-def]
    chats = [_visitor_chat(world, name=f"V{i}") for i in range(5)]
    world.service.mark_pending(conversation=chats[0], by=world.owner)
    world.service.close_conversation(conversation=chats[1], by=world.owner)
    world.service.close_conversation(conversation=chats[2], by=world.owner)
    world.service.assign_conversation(conversation=chats[3], agent=world.owner, by=world.owner)

    with django_assert_num_queries(1):
        counts = selectors.status_counts(agent=world.owner)
    assert counts == {"open": 2, "pending": 1, "closed": 2}
    # The employee doesn't see a chat assigned to someone else.
    assert selectors.status_counts(agent=world.employee) == {"open": 1, "pending": 1, "closed": 2}


@pytest.mark.django_db
def test_the_visitor_side_state_is_read_in_one_statement(
    world: ChatWorld, django_assert_num_queries
) -> None:  # type: ignore[no-untyped-def]
    conv = _visitor_chat(world, body="v1")
    world.service.send_visitor_message(conversation=conv, visitor=conv.visitor, body="v2")
    sent = [
        world.service.send_agent_message(conversation=conv, agent=world.owner, body=body).message
        for body in ("a1", "a2", "a3")
    ]
    first_visitor = conv.messages.get(body="v1").seq
    world.service.mark_read(conversation=conv, reader="user", up_to_seq=first_visitor)
    world.service.mark_read(conversation=conv, reader="visitor", up_to_seq=sent[0].seq)
    conv.refresh_from_db()

    with django_assert_num_queries(1):
        state = selectors.visitor_side_state(conversation=conv)
    assert state == selectors.VisitorSideState(
        status="open", last_seq=conv.last_seq, read_up_to=first_visitor, unread=2
    )
    conv.delete()
    assert selectors.visitor_side_state(conversation=conv) is None
