"""Conversation actions (assign, status, convert, promote, delete/restore) and who may run them."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from crm.chat.models import ChatVisitor
from crm.chat.services import chat_service
from crm.core.models import Lead, Person
from crm.core.roles import EMPLOYEE
from crm.core.services import create_agent
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import (
    INDEX,
    UNREAD,
    action_url,
    bodies,
    client_for,
    flashes,
    messages_url,
    new_chat,
    post_json,
    read_url,
    send_url,
    show_url,
    user_with,
)

pytestmark = pytest.mark.django_db


class ActionTests:
    def test_assign_to_me_to_another_agent_and_unassign(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        url = action_url(conv, "assign")

        me = owner.post(url, {"agent": "me"})
        conv.refresh_from_db()
        assert me.status_code == 302 and me["Location"] == show_url(conv)
        assert conv.user_assigned_id == world.owner.pk
        assert flashes(owner, me) == ["success: Assigned to Olivia."]

        other = owner.post(url, {"agent": str(world.employee.pk)})
        conv.refresh_from_db()
        assert conv.user_assigned_id == world.employee.pk
        assert flashes(owner, other) == ["success: Assigned to Emma."]
        page = owner.get(show_url(conv)).content.decode()
        assert f'<option value="{world.employee.pk}" selected>' in page

        nobody = owner.post(url, {"agent": ""})
        conv.refresh_from_db()
        assert conv.user_assigned_id is None
        assert flashes(owner, nobody) == ["success: Unassigned."]

        assert bodies(conv, sender_type="system") == [
            "Olivia joined the chat.",
            "Olivia assigned the chat to Emma.",
            "Olivia unassigned the chat.",
        ]

    def test_the_assign_menu_offers_only_agents_with_chat_access(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        outsider = get_user_model().objects.create_user(username="otto", password="x")
        gone = create_agent(username="gary", password="x", role=EMPLOYEE, validate=False)
        gone.is_active = False
        gone.save()

        response = owner.get(show_url(conv))

        assert [a.pk for a in response.context["agents"]] == [world.employee.pk, world.owner.pk]
        refused = owner.post(action_url(conv, "assign"), {"agent": str(outsider.pk)})
        assert flashes(owner, refused) == ["error: Choose an active agent."]
        conv.refresh_from_db()
        assert conv.user_assigned_id is None

    def test_an_employee_handing_a_chat_over_lands_on_the_inbox(
        self, world: ChatWorld, employee: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")

        response = employee.post(action_url(conv, "assign"), {"agent": str(world.owner.pk)})

        assert response.status_code == 302 and response["Location"] == INDEX
        assert flashes(employee, response) == ["success: Assigned to Olivia."]
        assert employee.get(show_url(conv)).status_code == 404

    @pytest.mark.parametrize(
        ("action", "status", "flash", "system"),
        [
            (
                "pending",
                "pending",
                "success: Chat C1001 is pending.",
                "This chat was marked pending by Olivia.",
            ),
            ("close", "closed", "success: Chat C1001 closed.", "This chat was closed by Olivia."),
        ],
    )
    def test_pending_and_close(
        self, world: ChatWorld, owner: Client, action: str, status: str, flash: str, system: str
    ) -> None:
        conv = new_chat(world.widget, says="hi")

        response = owner.post(action_url(conv, action))

        conv.refresh_from_db()
        assert response["Location"] == show_url(conv)
        assert conv.status == status and flashes(owner, response) == [flash]
        assert bodies(conv, sender_type="system") == [system]
        again = owner.post(action_url(conv, action))
        assert flashes(owner, again) == [f"error: Chat C1001 is already {status}."]
        assert bodies(conv, sender_type="system") == [system]

    def test_reopen(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        chat_service.close_conversation(conversation=conv, by=world.owner)

        response = owner.post(action_url(conv, "reopen"))

        conv.refresh_from_db()
        assert conv.status == "open" and conv.closed_at is None
        assert flashes(owner, response) == ["success: Chat C1001 reopened."]
        assert bodies(conv, sender_type="system")[-1] == "This chat was reopened by Olivia."

    def test_convert_creates_a_lead_with_the_transcript(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, name="Ann Lee", email="ann@example.com", says="Price?")
        chat_service.send_agent_message(conversation=conv, agent=world.owner, body="It's 10 €.")
        chat_service.send_system_message(conversation=conv, body="hush", internal=True)

        response = owner.post(action_url(conv, "convert"))

        lead = Lead.objects.get()
        assert response.status_code == 302 and response["Location"] == lead.get_absolute_url()
        assert flashes(owner, response) == [
            "success: Converted to lead “Ann Lee (ann@example.com) · chat C1001”."
        ]
        assert lead.source == "chat" and lead.owner == world.owner
        note = lead.notes.get().content
        assert note.startswith("Chat C1001 transcript")
        assert "Ann Lee: Price?" in note and "Olivia: It's 10 €." in note
        assert "hush" not in note  # internal notes stay out of the lead
        conv.refresh_from_db()
        assert conv.lead == lead
        person = Person.objects.get()
        assert lead.person == person and conv.visitor.person == person
        assert (
            bodies(conv, sender_type="system")[-1]
            == "Converted to lead “Ann Lee (ann@example.com) · chat C1001”."
        )

        lead_page = owner.get(lead.get_absolute_url()).content.decode()
        assert "Chat C1001 transcript" in lead_page and "Price?" in lead_page
        chat_page = owner.get(show_url(conv)).content.decode()
        assert "View lead" in chat_page and "Convert to lead" not in chat_page

    def test_converting_twice_is_refused_kindly(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        first = owner.post(action_url(conv, "convert"))
        assert flashes(owner, first) == ["success: Converted to lead “Chat visitor · chat C1001”."]

        again = owner.post(action_url(conv, "convert"))

        assert again.status_code == 302 and again["Location"] == show_url(conv)
        assert flashes(owner, again) == ["error: Chat C1001 was already converted to a lead."]
        assert Lead.objects.count() == 1
        assert owner.get(again["Location"]).status_code == 200

    def test_promote_links_the_visitor_to_a_person(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, name="Grace Hopper", email="grace@example.com", says="hi")

        response = owner.post(action_url(conv, "promote"))

        person = Person.objects.get()
        assert (person.first_name, person.last_name) == ("Grace", "Hopper")
        assert person.emails.get().address == "grace@example.com"
        assert flashes(owner, response) == ["success: Visitor linked to Grace Hopper."]
        assert ChatVisitor.objects.get(pk=conv.visitor_id).person == person
        assert bodies(conv, sender_type="system") == ["Visitor linked to person Grace Hopper."]
        html = owner.get(show_url(conv)).content.decode()
        assert f'<a href="{person.get_absolute_url()}">Grace Hopper</a>' in html
        assert "Promote to person" not in html

    def test_promote_without_a_name_or_email_is_refused(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        response = owner.post(action_url(conv, "promote"))
        assert flashes(owner, response) == [
            "error: Ask the visitor for a name or email before promoting them."
        ]
        assert not Person.objects.exists()


class PermissionTests:
    def test_anonymous_users_are_sent_to_log_in(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        anonymous = Client()
        for method, url in [
            ("get", INDEX),
            ("get", UNREAD),
            ("get", show_url(conv)),
            ("get", messages_url(conv)),
            ("post", send_url(conv)),
            ("post", read_url(conv)),
            ("post", action_url(conv, "close")),
        ]:
            response = getattr(anonymous, method)(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url
        assert bodies(conv) == ["hi"]

    def test_users_without_a_role_get_403(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        nobody = client_for(get_user_model().objects.create_user(username="nina", password="x"))
        for method, url in [
            ("get", INDEX),
            ("get", UNREAD),
            ("get", show_url(conv)),
            ("get", messages_url(conv)),
            ("post", send_url(conv)),
            ("post", read_url(conv)),
            ("post", action_url(conv, "close")),
        ]:
            assert getattr(nobody, method)(url).status_code == 403, url
        conv.refresh_from_db()
        assert conv.status == "open"

    def test_employees_get_404_for_chats_of_other_agents(
        self, world: ChatWorld, employee: Client
    ) -> None:
        nobodys = new_chat(world.widget, says="hi")
        others = new_chat(world.widget, says="hello")
        chat_service.assign_conversation(conversation=others, agent=world.owner, by=world.owner)

        assert employee.get(show_url(nobodys)).status_code == 200
        for method, url in [
            ("get", show_url(others)),
            ("get", messages_url(others)),
            ("post", send_url(others)),
            ("post", read_url(others)),
            ("post", action_url(others, "assign")),
            ("post", action_url(others, "close")),
        ]:
            assert getattr(employee, method)(url).status_code == 404, url
        others.refresh_from_db()
        assert others.status == "open" and others.user_assigned_id == world.owner.pk

    def test_view_only_agents_cannot_act_or_send(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        viewer = client_for(user_with("vera", "view_chat"))

        assert viewer.get(show_url(conv)).status_code == 200
        assert viewer.get(messages_url(conv)).status_code == 200
        assert post_json(viewer, send_url(conv), {"body": "hi"}).status_code == 403
        for name in ("assign", "pending", "close", "reopen", "convert", "promote"):
            assert viewer.post(action_url(conv, name), {"agent": "me"}).status_code == 403, name
        conv.refresh_from_db()
        assert (conv.status, conv.user_assigned_id, conv.lead_id) == ("open", None, None)
        assert bodies(conv) == ["hi"]

    def test_agents_without_add_lead_cannot_convert(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, name="Ann", says="hi")
        replier = client_for(user_with("rick", "view_chat", "reply_chat"))

        assert "Convert to lead" not in replier.get(show_url(conv)).content.decode()
        response = replier.post(action_url(conv, "convert"))

        assert flashes(replier, response) == ["error: You may not create leads."]
        assert not Lead.objects.exists()
        promote = replier.post(action_url(conv, "promote"))
        assert flashes(replier, promote) == ["error: You may not create people."]
        assert not Person.objects.exists()

    def test_actions_and_send_need_post(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        for url in (send_url(conv), read_url(conv), action_url(conv, "close")):
            assert owner.get(url).status_code == 405, url
        assert owner.post(INDEX).status_code == 405
        conv.refresh_from_db()
        assert conv.status == "open"

    def test_a_disabled_module_hides_every_chat_url(
        self, world: ChatWorld, owner: Client, settings: Any
    ) -> None:
        conv = new_chat(world.widget, says="hi")
        settings.CRM_MODULES = []
        for method, url in [
            ("get", INDEX),
            ("get", UNREAD),
            ("get", show_url(conv)),
            ("get", messages_url(conv)),
            ("post", send_url(conv)),
            ("post", action_url(conv, "close")),
        ]:
            assert getattr(owner, method)(url).status_code == 404, url
        conv.refresh_from_db()
        assert conv.status == "open"
        assert 'data-nav="chat"' not in owner.get(reverse("crm-dashboard")).content.decode()

    def test_an_unknown_conversation_is_404(self, world: ChatWorld, owner: Client) -> None:
        missing = "00000000-0000-0000-0000-000000000000"
        assert owner.get(f"/crm/chat/{missing}/").status_code == 404
        assert owner.post(f"/crm/chat/{missing}/close/").status_code == 404
