"""Lead pages: list, search, status filter, pagination, detail, create, edit and delete."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.core.models import Lead, Note, Organisation, Person

pytestmark = pytest.mark.django_db

INDEX = reverse("crm-lead-index")
CREATE = reverse("crm-lead-create")


def lead_data(**fields: str) -> dict[str, str]:
    data = {
        "title": "Fifty seats",
        "description": "",
        "person": "",
        "organisation": "",
        "status": "new",
        "source": "web",
        "owner": "",
    }
    data.update(fields)
    return data


def titles_on(response) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(lead.title for lead in response.context["page_obj"])


def test_it_lists_leads_with_person_organisation_and_owner(
    manager_client: Client,
    manager,
    make_lead: Callable[..., Lead],
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
) -> None:
    make_lead(
        "Engine order",
        person=make_person("Ada", "Lovelace"),
        organisation=make_organisation("Northwind Traders"),
        owner=manager,
        status="qualified",
    )
    response = manager_client.get(INDEX)
    content = response.content.decode()
    for text in ("Engine order", "Ada Lovelace", "Northwind Traders", "Manon", "Qualified"):
        assert text in content
    assert "1 lead" in content


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "engine"}, ["Engine order"]),
        ({"q": "lovelace"}, ["Engine order"]),
        ({"q": "grace hopper"}, ["Compiler"]),
        ({"status": "won"}, ["Compiler"]),
        ({"q": "engine", "status": "won"}, []),
        ({"status": "not-a-status"}, ["Compiler", "Engine order"]),
    ],
)
def test_it_searches_by_title_and_person_and_filters_by_status(
    manager_client: Client,
    make_lead: Callable[..., Lead],
    make_person: Callable[..., Person],
    params: dict[str, str],
    expected: list[str],
) -> None:
    make_lead("Engine order", person=make_person("Ada", "Lovelace"))
    make_lead("Compiler", person=make_person("Grace", "Hopper"), status="won")
    assert titles_on(manager_client.get(INDEX, params)) == expected


def test_it_shows_an_empty_state(manager_client: Client) -> None:
    assert b"No leads yet." in manager_client.get(INDEX).content
    assert b"No leads match." in manager_client.get(INDEX, {"status": "won"}).content


def test_it_paginates_keeping_search_and_status(
    manager_client: Client, make_lead: Callable[..., Lead]
) -> None:
    for i in range(27):
        make_lead(f"Deal {i}", status="won")
    make_lead("Deal lost", status="lost")
    first = manager_client.get(INDEX, {"q": "deal", "status": "won"})
    assert len(first.context["page_obj"]) == 25
    assert b"27 leads" in first.content
    assert b'href="?q=deal&amp;status=won&amp;page=2"' in first.content
    second = manager_client.get(INDEX, {"q": "deal", "status": "won", "page": "2"})
    assert len(second.context["page_obj"]) == 2
    assert b'href="?q=deal&amp;status=won&amp;page=1"' in second.content


def test_it_lists_in_a_constant_number_of_queries(
    manager_client: Client,
    manager,
    make_lead: Callable[..., Lead],
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            manager_client.get(INDEX)
        return len(ctx.captured_queries)

    def add_lead() -> None:
        make_lead(person=make_person(), organisation=make_organisation(), owner=manager)

    add_lead()
    one = count_queries()
    for _ in range(10):
        add_lead()
    assert count_queries() == one


def test_it_shows_a_lead(
    manager_client: Client,
    manager,
    make_lead: Callable[..., Lead],
    make_person: Callable[..., Person],
    make_note: Callable[..., Note],
) -> None:
    person = make_person("Ada", "Lovelace")
    lead = make_lead("Engine order", person=person, owner=manager, source="referral")
    make_note("Wants a demo", lead=lead, author=manager)
    content = manager_client.get(lead.get_absolute_url()).content.decode()
    for text in ("Engine order", "Referral", "Manon", "Wants a demo"):
        assert text in content
    assert f'href="{person.get_absolute_url()}"' in content


def test_it_answers_404_for_an_unknown_lead(manager_client: Client) -> None:
    url = reverse("crm-lead-show", args=["00000000-0000-0000-0000-000000000000"])
    assert manager_client.get(url).status_code == 404


def test_it_creates_a_lead_owned_by_the_creator(
    manager_client: Client, manager, make_person: Callable[..., Person]
) -> None:
    form = manager_client.get(CREATE).context["form"]
    assert form["owner"].value() == manager.pk
    person = make_person()
    response = manager_client.post(CREATE, lead_data(person=str(person.pk)), follow=True)
    lead = Lead.objects.get()
    assert response.redirect_chain == [(lead.get_absolute_url(), 302)]
    assert b"Created Fifty seats." in response.content
    assert (lead.person, lead.owner, lead.status) == (person, manager, "new")


def test_it_creates_a_lead_for_another_owner(manager_client: Client, employee) -> None:
    manager_client.post(CREATE, lead_data(owner=str(employee.pk)))
    assert Lead.objects.get().owner == employee


def test_it_rejects_a_bad_status_and_saves_nothing(manager_client: Client) -> None:
    response = manager_client.post(CREATE, lead_data(status="bribed", title=""))
    content = response.content.decode()
    assert "Select a valid choice. bribed is not one of the available choices." in content
    assert "This field is required." in content
    assert Lead.objects.count() == 0


def test_it_edits_a_lead(
    manager_client: Client, manager, employee, make_lead: Callable[..., Lead]
) -> None:
    lead = make_lead(owner=manager)
    url = reverse("crm-lead-edit", args=[lead.external_id])
    assert manager_client.get(url).status_code == 200
    data = lead_data(title="Sixty seats", status="won", owner=str(employee.pk))
    response = manager_client.post(url, data, follow=True)
    assert b"Saved Sixty seats." in response.content
    lead.refresh_from_db()
    assert (lead.title, lead.status, lead.owner) == ("Sixty seats", "won", employee)


def test_it_may_leave_an_edited_lead_unowned(
    manager_client: Client, manager, make_lead: Callable[..., Lead]
) -> None:
    lead = make_lead(owner=manager)
    manager_client.post(reverse("crm-lead-edit", args=[lead.external_id]), lead_data())
    lead.refresh_from_db()
    assert lead.owner is None


def test_it_asks_before_deleting_and_deletes_on_post(
    manager_client: Client, make_lead: Callable[..., Lead], make_note: Callable[..., Note]
) -> None:
    lead = make_lead()
    make_note(lead=lead)
    url = reverse("crm-lead-delete", args=[lead.external_id])
    assert b"Delete Fifty seats?" in manager_client.get(url).content
    assert Lead.objects.exists()
    response = manager_client.post(url, follow=True)
    assert response.redirect_chain == [(INDEX, 302)]
    assert b"Deleted Fifty seats." in response.content
    assert Lead.objects.count() == Note.objects.count() == 0
