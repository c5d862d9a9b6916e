from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from crm.chat.models import ChatConversation, ChatMessage
from crm.chat.services import AlreadyConverted, ConversationClosed, NotAllowed
from crm.core.models import Email, Lead, Note, Person
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


class ConvertAndPromoteTests:
    def _chat(self, world: ChatWorld) -> ChatConversation:
        world.service.update_visitor_details(visitor=world.visitor, name="Ann Lee", email="a@x.io")
        conv = world.conversation()
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="Price?")
        world.service.send_agent_message(conversation=conv, agent=world.owner, body="10 EUR")
        return conv

    def test_it_converts_to_a_chat_lead_with_the_transcript_and_refuses_twice(self, world):
        conv = self._chat(world)
        lead = world.service.convert_to_lead(conversation=conv, by=world.owner)
        assert (lead.title, lead.source, lead.owner) == (
            "Ann Lee (a@x.io) · chat C1001",
            "chat",
            world.owner,
        )
        assert lead.person is not None and lead.person.name == "Ann Lee"
        note = Note.objects.get(lead=lead)
        assert "C1001" in note.content and "Ann Lee: Price?" in note.content
        assert "Olivia: 10 EUR" in note.content
        conv.refresh_from_db()
        assert conv.lead_id == lead.pk
        seqs = list(conv.messages.values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
        with pytest.raises(AlreadyConverted):
            world.service.convert_to_lead(conversation=conv, by=world.owner)
        assert Lead.objects.count() == 1

    def test_it_converts_an_anonymous_visitor_without_a_person(self, world: ChatWorld):
        lead = world.service.convert_to_lead(conversation=world.conversation(), by=world.owner)
        assert lead.title == "Chat visitor · chat C1001" and lead.person is None

    def test_a_long_name_still_leaves_the_chat_id_in_the_lead_title(self, world: ChatWorld):
        world.service.update_visitor_details(visitor=world.visitor, name="N" * 255)
        lead = world.service.convert_to_lead(conversation=world.conversation(), by=world.owner)
        assert len(lead.title) == 255 and lead.title.endswith("… · chat C1001")

    def test_promotion_links_an_existing_person_by_email(self, world: ChatWorld):
        existing = Person.objects.create(first_name="Ann")
        Email.objects.create(person=existing, address="A@X.io", primary=True)
        world.service.update_visitor_details(visitor=world.visitor, email="a@x.io")
        person = world.service.promote_visitor_to_person(visitor=world.visitor, by=world.owner)
        assert person.pk == existing.pk and Person.objects.count() == 1
        assert world.visitor.person_id == existing.pk

    def test_promotion_creates_a_person_with_email_once(self, world: ChatWorld):
        self._chat(world)
        person = world.service.promote_visitor_to_person(visitor=world.visitor, by=world.owner)
        again = world.service.promote_visitor_to_person(visitor=world.visitor, by=world.owner)
        assert again.pk == person.pk and (person.first_name, person.last_name) == ("Ann", "Lee")
        assert list(person.emails.values_list("address", flat=True)) == ["a@x.io"]

    def test_promotion_needs_a_name_or_email(self, world: ChatWorld):
        with pytest.raises(NotAllowed):
            world.service.promote_visitor_to_person(visitor=world.visitor, by=world.owner)
        assert Person.objects.count() == 0
