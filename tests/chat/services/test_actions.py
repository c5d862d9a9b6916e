"""Agent actions (services/actions.py): status, assignment, soft delete and restore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import pytest

from crm.chat import events, revocation, selectors
from crm.chat.models import ChatConversation, ChatMessage
from crm.chat.services import NotAllowed
from tests.chat.conftest import ChatWorld


@dataclass
class Published:
    """What a write handed to the channel layer once its transaction committed."""

    events: list[tuple[list[str], events.ChatEvent]] = field(default_factory=list)
    rechecks: list[tuple[list[str], str]] = field(default_factory=list)


Capture = Callable[[], AbstractContextManager[Published]]


@pytest.fixture
def published(
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., AbstractContextManager[object]],
) -> Capture:
    @contextmanager
    def capture() -> Iterator[Published]:
        out = Published()

        def recheck(groups: list[str], *, reason: str, ended: bool = False) -> None:
            out.rechecks.append((list(groups), reason))

        monkeypatch.setattr(revocation, "send_recheck", recheck)
        with django_capture_on_commit_callbacks(execute=True), events.collected() as pending:
            yield out
        for groups, event in pending:
            # Round-trip now, so an unserialisable payload fails here and not on a
            # socket; an event built as a dict must be exactly its schema's dump.
            model = events.as_model(event)
            type(model).model_validate_json(model.model_dump_json())
            assert events.as_json(model) == events.as_json(event)
            out.events.append((groups, model))

    return capture


def _bodies(conv: ChatConversation) -> list[tuple[str, str, bool]]:
    return list(conv.messages.values_list("sender_type", "body", "is_internal").order_by("seq"))


class StatusAndAssignmentTests:
    def test_pending_close_and_reopen_each_leave_a_system_message(self, world: ChatWorld):
        conv = world.conversation()
        s = world.service
        s.mark_pending(conversation=conv, by=world.owner)
        s.close_conversation(conversation=conv, by=world.owner)
        assert conv.status == "closed" and conv.closed_at is not None
        s.reopen_conversation(conversation=conv, by=world.owner)
        conv.refresh_from_db()
        assert conv.status == "open" and conv.closed_at is None
        assert list(conv.messages.values_list("body", flat=True)) == [
            "This chat was marked pending by Olivia.",
            "This chat was closed by Olivia.",
            "This chat was reopened by Olivia.",
        ]

    def test_it_refuses_a_status_the_chat_already_has(self, world: ChatWorld):
        conv = world.conversation()
        with pytest.raises(NotAllowed, match="already open"):
            world.service.reopen_conversation(conversation=conv, by=world.owner)
        assert conv.messages.count() == 0

    def test_assign_and_unassign(self, world: ChatWorld):
        conv = world.conversation()
        s = world.service
        s.assign_conversation(conversation=conv, agent=world.employee, by=world.owner)
        assert ChatConversation.objects.get(pk=conv.pk).user_assigned_id == world.employee.pk
        s.assign_conversation(conversation=conv, agent=None, by=world.owner)
        assert ChatConversation.objects.get(pk=conv.pk).user_assigned_id is None
        assert list(conv.messages.values_list("body", flat=True)) == [
            "Olivia assigned the chat to Emma.",
            "Olivia unassigned the chat.",
        ]

    def test_it_refuses_to_assign_an_inactive_agent(self, world: ChatWorld):
        world.employee.is_active = False
        with pytest.raises(NotAllowed):
            world.service.assign_conversation(
                conversation=world.conversation(), agent=world.employee, by=world.owner
            )


class DeleteAndRestoreTests:
    def _chat(self, world: ChatWorld) -> ChatConversation:
        conv = world.conversation()
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
        return conv

    def test_a_deleted_chat_leaves_the_inbox_and_the_visitors_side(self, world: ChatWorld):
        conv = self._chat(world)
        world.service.delete_conversation(conversation=conv, by=world.owner)

        assert conv.pk not in {c.pk for c in selectors.conversation_list(agent=world.owner)}
        assert not selectors.conversation_list(agent=world.owner, status=None).exists()
        assert selectors.visitor_current_conversation(visitor=world.visitor) is None
        found = selectors.visitor_conversation_get(
            visitor=world.visitor, external_id=conv.external_id
        )
        assert found is None
        # Only on the "deleted" tab, for agents who may delete.
        deleted = selectors.conversation_list(agent=world.owner, status="deleted")
        assert [c.pk for c in deleted] == [conv.pk]

    def test_deleting_leaves_an_internal_note_and_tells_open_sockets(
        self, world: ChatWorld, published: Capture
    ):
        conv = self._chat(world)
        with published() as out:
            returned = world.service.delete_conversation(conversation=conv, by=world.owner)

        stored = ChatConversation.objects.get(pk=conv.pk)
        assert returned is conv and conv.deleted_at == stored.deleted_at is not None
        assert conv.last_seq == stored.last_seq == 2
        assert _bodies(conv)[-1] == (ChatMessage.SENDER_SYSTEM, "Deleted by Olivia.", True)
        group = events.conversation_group(conv.external_id)
        assert out.rechecks == [([group, events.INBOX_GROUP], "conversation deleted")]
        assert len(out.events) == 1
        groups, event = out.events[0]
        assert groups == [group, events.INBOX_GROUP]
        assert isinstance(event, events.MessageCreated)
        assert (event.seq, event.message.body, event.message.internal) == (
            2,
            "Deleted by Olivia.",
            True,
        )

    def test_a_second_delete_is_refused_and_writes_nothing(
        self, world: ChatWorld, published: Capture
    ):
        conv = self._chat(world)
        world.service.delete_conversation(conversation=conv, by=world.owner)
        before = (ChatConversation.objects.get(pk=conv.pk).deleted_at, _bodies(conv))
        with published() as out, pytest.raises(NotAllowed, match="already deleted"):
            world.service.delete_conversation(conversation=conv, by=world.employee)
        assert (ChatConversation.objects.get(pk=conv.pk).deleted_at, _bodies(conv)) == before
        assert out == Published()

    def test_restore_brings_the_chat_back_with_a_system_note(
        self, world: ChatWorld, published: Capture
    ):
        conv = self._chat(world)
        world.service.delete_conversation(conversation=conv, by=world.owner)
        with published() as out:
            world.service.restore_conversation(conversation=conv, by=world.employee)

        assert conv.deleted_at is None
        assert ChatConversation.objects.get(pk=conv.pk).deleted_at is None
        assert [c.pk for c in selectors.conversation_list(agent=world.owner)] == [conv.pk]
        assert selectors.visitor_current_conversation(visitor=world.visitor) == conv
        assert _bodies(conv)[-1] == (ChatMessage.SENDER_SYSTEM, "Restored by Emma.", True)
        # Restoring only widens access: no socket is told to look again.
        assert out.rechecks == []
        [(_, event)] = out.events
        assert isinstance(event, events.MessageCreated) and event.seq == conv.last_seq == 3

    def test_restoring_a_chat_that_is_not_deleted_is_refused(self, world: ChatWorld):
        conv = self._chat(world)
        with pytest.raises(NotAllowed, match="is not deleted"):
            world.service.restore_conversation(conversation=conv, by=world.owner)
        assert _bodies(conv) == [(ChatMessage.SENDER_VISITOR, "hi", False)]

    def test_a_visitor_coming_back_after_a_delete_starts_a_new_chat(self, world: ChatWorld):
        conv = self._chat(world)
        world.service.delete_conversation(conversation=conv, by=world.owner)
        again = world.conversation()
        assert again.pk != conv.pk and again.chat_id == "C1002"
