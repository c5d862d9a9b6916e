"""The CRM-wide search (sidebar box, ``/crm/search/``): chats, people, organisations
and leads in one page, each section only for agents who may see that kind of record."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from crm.chat.services import chat_service
from crm.core.models import Email, Lead, Organisation, Person, Phone
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import XSS_NAME, client_for, new_chat, show_url, visitor_says

SEARCH = reverse("crm-search")


def sections(client: Client, q: str) -> dict[str, list[str]]:
    response = client.get(SEARCH, {"q": q})
    assert response.status_code == 200
    return {s.label: [h.title for h in s.hits] for s in response.context["sections"]}


@pytest.fixture
def records(world: ChatWorld) -> dict[str, object]:
    org = Organisation.objects.create(name="Hopper Freight", website="https://hopper.example")
    person = Person.objects.create(first_name="Grace", last_name="Hopper", organisation=org)
    Email.objects.create(person=person, address="grace@hopper.example", primary=True)
    lead = Lead.objects.create(title="Hopper fleet renewal", person=person)
    chat = new_chat(world.widget, name="Walter", says="is Hopper Freight your carrier?")
    return {"org": org, "person": person, "lead": lead, "chat": chat}


class GlobalSearchTests:
    def test_it_finds_every_kind_of_record_in_one_page(
        self, world: ChatWorld, owner: Client, records: dict
    ) -> None:
        chat = records["chat"]
        found = sections(owner, "hopper")
        assert list(found) == ["Chats", "People", "Organisations", "Leads"]
        assert found["Chats"] == [f"{chat.chat_id} · Walter"]
        assert found["People"] == ["Grace Hopper"]
        assert found["Organisations"] == ["Hopper Freight"]
        assert found["Leads"] == ["Hopper fleet renewal"]
        html = owner.get(SEARCH, {"q": "hopper"}).content.decode()
        assert f'href="{show_url(chat)}#m1"' in html
        assert "is <mark>Hopper</mark> Freight your carrier?" in html
        assert f'href="{records["person"].get_absolute_url()}"' in html

    def test_a_phone_number_finds_its_person_however_it_is_typed(
        self, owner: Client, records: dict
    ) -> None:
        Phone.objects.create(person=records["person"], number="+1 (202) 555-0142")
        assert sections(owner, "202 555 0142") == {"People": ["Grace Hopper"]}
        assert sections(owner, "+12025550142") == {"People": ["Grace Hopper"]}

    def test_the_sidebar_box_is_on_every_page(self, owner: Client) -> None:
        html = owner.get(reverse("crm-dashboard")).content.decode()
        assert f'action="{SEARCH}" role="search"' in html

    def test_sections_follow_permissions_and_chat_scoping(
        self, world: ChatWorld, employee: Client, records: dict
    ) -> None:
        theirs = records["chat"]
        chat_service.assign_conversation(conversation=theirs, agent=world.owner, by=world.owner)
        free = new_chat(world.widget, says="hopper again")
        found = sections(employee, "hopper")
        assert found.get("Chats") == [f"{free.chat_id} · Visitor #{free.visitor_id}"]
        nobody = get_user_model().objects.create_user("nobody", password="x")
        assert sections(client_for(nobody), "hopper") == {}

    def test_no_chats_when_the_module_is_off(self, settings, owner: Client, records: dict) -> None:
        settings.CRM_MODULES = []
        assert "Chats" not in sections(owner, "hopper")

    def test_a_closed_chat_is_found_with_its_status_and_more_links_to_the_inbox(
        self, world: ChatWorld, owner: Client
    ) -> None:
        convs = [new_chat(world.widget, says=f"zephyr {i}") for i in range(6)]
        chat_service.close_conversation(conversation=convs[0], by=world.owner)
        response = owner.get(SEARCH, {"q": "zephyr"})
        (chats,) = response.context["sections"]
        assert len(chats.hits) == 5 and chats.more
        assert chats.more_url == f"{reverse('crm-chat-index')}?q=zephyr&status=all"
        visitor_says(convs[0], "zephyr closed")
        closed = sections(owner, "closed")
        assert closed["Chats"] == [f"{convs[0].chat_id} · Visitor #{convs[0].visitor_id}"]

    def test_what_people_typed_is_text_and_bad_input_is_harmless(
        self, world: ChatWorld, owner: Client
    ) -> None:
        new_chat(world.widget, name=XSS_NAME, says=f"quokka {XSS_NAME}")
        html = owner.get(SEARCH, {"q": "quokka"}).content.decode()
        assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
        for q in ["", "   ", "\x00", "x" * 5000, '"', "-", "C99999999999"]:
            assert owner.get(SEARCH, {"q": q}).status_code == 200, q
        assert "Nothing matches" in owner.get(SEARCH, {"q": "nothing-like-this"}).content.decode()

    def test_it_needs_a_login(self, client: Client) -> None:
        response = client.get(SEARCH, {"q": "x"})
        assert response.status_code == 302 and "/login/" in response["Location"]
