"""Who may open which core page: every view is checked, none is left open."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from crm.core.models import Lead, Note, Organisation, Person

pytestmark = pytest.mark.django_db

KINDS = ("person", "organisation", "lead")


@pytest.fixture
def records(
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
    make_lead: Callable[..., Lead],
    make_note: Callable[..., Note],
) -> dict[str, tuple[Person | Organisation | Lead, Note]]:
    person, organisation, lead = make_person(), make_organisation(), make_lead()
    return {
        "person": (person, make_note(person=person)),
        "organisation": (organisation, make_note(organisation=organisation)),
        "lead": (lead, make_note(lead=lead)),
    }


def all_urls(records: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    """(method, url) of every core record page."""
    urls = []
    for kind in KINDS:
        obj, note = records[kind]
        uid = obj.external_id
        urls += [
            ("get", reverse(f"crm-{kind}-index")),
            ("get", reverse(f"crm-{kind}-create")),
            ("get", reverse(f"crm-{kind}-show", args=[uid])),
            ("get", reverse(f"crm-{kind}-edit", args=[uid])),
            ("get", reverse(f"crm-{kind}-delete", args=[uid])),
            ("post", reverse(f"crm-{kind}-delete", args=[uid])),
            ("post", reverse(f"crm-{kind}-note-create", args=[uid])),
            ("post", reverse(f"crm-{kind}-note-delete", args=[uid, note.pk])),
        ]
    return urls


def test_it_sends_anonymous_visitors_to_login(client: Client, records: dict) -> None:  # type: ignore[type-arg]
    for method, url in all_urls(records):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{reverse('login')}?next="), url
    assert Person.objects.count() == Organisation.objects.count() == Lead.objects.count() == 1


def test_it_forbids_everything_to_a_user_without_a_role(
    nobody_client: Client,
    records: dict,  # type: ignore[type-arg]
) -> None:
    for method, url in all_urls(records):
        assert getattr(nobody_client, method)(url).status_code == 403, url
    assert Note.objects.count() == 3


@pytest.mark.parametrize("kind", KINDS)
def test_it_forbids_an_employee_to_delete(
    employee_client: Client,
    records: dict,  # type: ignore[type-arg]
    kind: str,
) -> None:
    obj, note = records[kind]
    delete = reverse(f"crm-{kind}-delete", args=[obj.external_id])
    assert employee_client.get(delete).status_code == 403
    assert employee_client.post(delete).status_code == 403
    note_delete = reverse(f"crm-{kind}-note-delete", args=[obj.external_id, note.pk])
    assert employee_client.post(note_delete).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert Note.objects.filter(pk=note.pk).exists()


def test_it_hides_delete_buttons_from_an_employee(
    employee_client: Client,
    records: dict,  # type: ignore[type-arg]
) -> None:
    for kind in KINDS:
        obj, _ = records[kind]
        content = employee_client.get(obj.get_absolute_url()).content.decode()
        assert reverse(f"crm-{kind}-edit", args=[obj.external_id]) in content
        assert reverse(f"crm-{kind}-delete", args=[obj.external_id]) not in content
        assert "Add note" in content


def test_it_lets_an_employee_create_and_add_notes(employee_client: Client, employee) -> None:
    response = employee_client.post(
        reverse("crm-organisation-create"), {"name": "Initech", "website": "", "description": ""}
    )
    assert response.status_code == 302
    org = Organisation.objects.get()
    assert org.owner == employee
    response = employee_client.post(
        reverse("crm-lead-create"),
        {"title": "Printers", "status": "new", "source": "web", "organisation": str(org.pk)},
    )
    assert response.status_code == 302
    note_url = reverse("crm-organisation-note-create", args=[org.external_id])
    assert employee_client.post(note_url, {"content": "Hello"}).status_code == 302
    assert Lead.objects.get().owner == employee
    assert Note.objects.get().author == employee


def test_it_shows_the_sidebar_links_a_user_may_follow(
    employee_client: Client, nobody_client: Client
) -> None:
    content = employee_client.get(reverse("crm-dashboard")).content.decode()
    for kind in KINDS:
        assert f'href="{reverse(f"crm-{kind}-index")}"' in content
    content = nobody_client.get(reverse("crm-dashboard")).content.decode()
    assert reverse("crm-person-index") not in content
