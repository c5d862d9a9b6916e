"""A lead converted from a chat links back to its conversation, for agents who may see it."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from crm.chat.models import ChatConversation
from crm.core.models import Lead
from tests.chat.conftest import ChatWorld


def _converted(world: ChatWorld) -> tuple[ChatConversation, Lead]:
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="Quote?")
    lead = world.service.convert_to_lead(conversation=conv, by=world.owner)
    return conv, lead


def _lead_page(agent, lead: Lead) -> str:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(agent)
    response = client.get(reverse("crm-lead-show", args=[lead.external_id]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_lead_page_links_to_the_chat_it_came_from(world: ChatWorld) -> None:
    conv, lead = _converted(world)
    html = _lead_page(world.owner, lead)
    assert f'href="{conv.get_absolute_url()}"' in html
    assert conv.chat_id in html


def test_only_chats_the_agent_may_open_are_linked(world: ChatWorld) -> None:
    conv, lead = _converted(world)
    link = f'href="{conv.get_absolute_url()}"'
    assert link in _lead_page(world.employee, lead)  # unassigned: employees may pick it up

    world.service.assign_conversation(conversation=conv, agent=world.owner, by=world.owner)
    html = _lead_page(world.employee, lead)
    assert link not in html
    assert link in _lead_page(world.owner, lead)


def test_a_deleted_chat_is_not_linked(world: ChatWorld) -> None:
    conv, lead = _converted(world)
    world.service.delete_conversation(conversation=conv, by=world.owner)
    assert f'href="{conv.get_absolute_url()}"' not in _lead_page(world.owner, lead)


def test_no_chat_link_while_the_chat_module_is_off(world: ChatWorld, settings) -> None:  # type: ignore[no-untyped-def]
    _, lead = _converted(world)
    settings.CRM_MODULES = []
    assert "/crm/chat/" not in _lead_page(world.owner, lead)
