"""Chats into the CRM (services/crm_links.py): convert to a lead, promote to a person."""

from __future__ import annotations

import pytest

from crm.chat.models import ChatConversation
from crm.chat.services import AlreadyConverted, NotAllowed
from crm.core.models import Email, Lead, Note, Person
from tests.chat.conftest import ChatWorld


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
