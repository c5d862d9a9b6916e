"""The sequencing core (services/messages.py): open, send, idempotency, reopen, read."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.chat.models import ChatConversation, ChatMessage, ChatWidget
from crm.chat.services import ConversationClosed, NotAllowed, NotServing
from tests.chat.conftest import ChatWorld


class OpenConversationTests:
    def test_it_numbers_chats_from_c1001_and_reuses_the_open_one(self, world: ChatWorld):
        first = world.conversation()
        again = world.conversation()
        other = world.conversation(world.other_visitor)
        assert (first.chat_id, again.pk, other.chat_id) == ("C1001", first.pk, "C1002")
        assert first.status == "open" and first.last_seq == 0

    def test_it_starts_a_new_chat_after_the_old_one_closed(self, world: ChatWorld):
        first = world.conversation()
        world.service.close_conversation(conversation=first, by=world.owner)
        assert world.conversation().chat_id == "C1002"


class SendMessageTests:
    def test_it_allocates_consecutive_seqs_and_updates_last_message_at(self, world: ChatWorld):
        conv = world.conversation()
        r1 = world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
        r2 = world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="yo")
        assert (r1.message.seq, r2.message.seq) == (1, 2)
        conv.refresh_from_db()
        assert conv.last_seq == 2 and conv.last_message_at == r2.message.created_at

    def test_it_is_idempotent_by_client_id(self, world: ChatWorld):
        conv = world.conversation()
        a = world.service.send_visitor_message(
            conversation=conv, visitor=world.visitor, body="hi", client_id="c-1"
        )
        b = world.service.send_visitor_message(
            conversation=conv, visitor=world.visitor, body="hi", client_id="c-1"
        )
        assert a.created and not b.created and a.message.pk == b.message.pk
        assert ChatMessage.objects.count() == 1
        # The retry's seq was rolled back with it: the next message is seq 2.
        assert conv.last_seq == 1
        c = world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="n")
        assert c.message.seq == 2 and b.payload == a.payload

    def test_a_retried_agent_reply_after_the_chat_closed_returns_the_stored_one(
        self, world: ChatWorld
    ):
        conv = world.conversation()
        sent = world.service.send_agent_message(
            conversation=conv, agent=world.owner, body="bye", client_id="a-1"
        )
        world.service.close_conversation(conversation=conv, by=world.owner)
        again = world.service.send_agent_message(
            conversation=conv, agent=world.owner, body="bye", client_id="a-1"
        )
        assert not again.created and again.message.pk == sent.message.pk
        with pytest.raises(ConversationClosed):
            world.service.send_agent_message(
                conversation=conv, agent=world.owner, body="new", client_id="a-2"
            )

    @pytest.mark.parametrize("change", ["deactivated", "new key", "widget deleted", "chat deleted"])
    def test_a_socket_write_under_a_key_that_no_longer_serves_is_refused(
        self, world: ChatWorld, change: str
    ):
        conv = world.conversation()
        key = world.widget.public_key
        world.service.send_visitor_message(
            conversation=conv, visitor=world.visitor, body="hi", widget_key=key
        )
        if change == "deactivated":
            ChatWidget.objects.filter(pk=world.widget.pk).update(is_active=False)
        elif change == "new key":
            world.service.regenerate_public_key(widget=world.widget)
        elif change == "widget deleted":
            ChatWidget.objects.filter(pk=world.widget.pk).update(deleted_at=timezone.now())
        else:
            ChatConversation.objects.filter(pk=conv.pk).update(deleted_at=timezone.now())
        with pytest.raises(NotServing):
            world.service.send_visitor_message(
                conversation=conv, visitor=world.visitor, body="late", widget_key=key
            )
        conv.refresh_from_db()
        assert conv.last_seq == 1 and ChatMessage.objects.count() == 1

    @pytest.mark.parametrize(
        ("body", "client_id"),
        [("", None), ("   \n ", None), ("x" * 5001, None), ("ok", "bad id!"), ("a\x00b", None)],
    )
    def test_it_rejects_bad_input_and_writes_nothing(self, world: ChatWorld, body, client_id):
        conv = world.conversation()
        with pytest.raises(ValidationError):
            world.service.send_visitor_message(
                conversation=conv, visitor=world.visitor, body=body, client_id=client_id
            )
        conv.refresh_from_db()
        assert ChatMessage.objects.count() == 0 and conv.last_seq == 0

    def test_it_refuses_a_visitor_writing_into_another_visitors_chat(self, world: ChatWorld):
        conv = world.conversation()
        with pytest.raises(NotAllowed):
            world.service.send_visitor_message(
                conversation=conv, visitor=world.other_visitor, body="hi"
            )
        assert ChatMessage.objects.count() == 0

    def test_a_visitor_reopens_a_closed_chat_with_a_system_message(self, world: ChatWorld):
        conv = world.conversation()
        world.service.close_conversation(conversation=conv, by=world.owner)
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="back")
        conv.refresh_from_db()
        assert conv.status == "open" and conv.closed_at is None
        bodies = list(conv.messages.values_list("sender_type", "body"))
        assert bodies == [
            ("system", "This chat was closed by Olivia."),
            ("system", "The visitor reopened the chat."),
            ("visitor", "back"),
        ]

    def test_an_agent_reply_assigns_an_unassigned_chat(self, world: ChatWorld):
        conv = world.conversation()
        world.service.send_agent_message(conversation=conv, agent=world.employee, body="Hello")
        conv.refresh_from_db()
        assert conv.user_assigned_id == world.employee.pk
        assert list(conv.messages.values_list("seq", "sender_type", "body")) == [
            (1, "system", "Emma joined the chat."),
            (2, "user", "Hello"),
        ]

    def test_an_agent_cannot_reply_into_a_closed_chat(self, world: ChatWorld):
        conv = world.conversation()
        world.service.close_conversation(conversation=conv, by=world.owner)
        with pytest.raises(ConversationClosed):
            world.service.send_agent_message(conversation=conv, agent=world.owner, body="x")
        assert conv.messages.filter(sender_type="user").count() == 0


class MarkReadTests:
    def test_it_marks_the_other_sides_messages_up_to_a_seq(self, world: ChatWorld):
        conv = world.conversation()
        s = world.service
        for body in ("a", "b", "c"):
            s.send_visitor_message(conversation=conv, visitor=world.visitor, body=body)
        assert s.mark_read(conversation=conv, reader="user", up_to_seq=2) == 2
        unread = conv.messages.filter(read_at__isnull=True).values_list("seq", flat=True)
        assert list(unread) == [3]
        assert s.mark_read(conversation=conv, reader="visitor") == 0  # no agent messages

    def test_it_rejects_an_unknown_reader(self, world: ChatWorld):
        with pytest.raises(ValidationError):
            world.service.mark_read(conversation=world.conversation(), reader="robot")
