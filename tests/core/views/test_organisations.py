"""Organisation pages: list, search, pagination, detail, create, edit and delete."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from crm.core.models import Lead, Note, Organisation, Person

pytestmark = pytest.mark.django_db

INDEX = reverse("crm-organisation-index")
CREATE = reverse("crm-organisation-create")


def names_on(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [o.name for o in response.context["page_obj"]]


def test_it_lists_organisations_with_counts(
    manager_client: Client,
    make_organisation: Callable[..., Organisation],
    make_person: Callable[..., Person],
    make_lead: Callable[..., Lead],
) -> None:
    org = make_organisation("Northwind Traders", website="https://northwind.example")
    make_person("Ada", organisation=org)
    make_person("Grace", organisation=org)
    make_lead(organisation=org)
    make_organisation("Globex")
    response = manager_client.get(INDEX)
    assert names_on(response) == ["Globex", "Northwind Traders"]
    northwind = response.context["page_obj"][1]
    assert (northwind.people_count, northwind.lead_count) == (2, 1)
    assert b"2 organisations" in response.content
    assert b"https://northwind.example" in response.content


@pytest.mark.parametrize(
    ("q", "expected"),
    [("north", ["Northwind Traders"]), ("globex.example", ["Globex"]), ("zzz", [])],
)
def test_it_searches_by_name_and_website(
    manager_client: Client,
    make_organisation: Callable[..., Organisation],
    q: str,
    expected: list[str],
) -> None:
    make_organisation("Northwind Traders", website="https://northwind.example")
    make_organisation("Globex", website="https://globex.example")
    assert names_on(manager_client.get(INDEX, {"q": q})) == expected


def test_it_shows_an_empty_state(manager_client: Client) -> None:
    assert b"No organisations yet." in manager_client.get(INDEX).content
    assert b"No organisations match" in manager_client.get(INDEX, {"q": "x"}).content


def test_it_paginates_and_keeps_the_search(
    manager_client: Client, make_organisation: Callable[..., Organisation]
) -> None:
    for i in range(26):
        make_organisation(f"Acme {i:02}")
    first = manager_client.get(INDEX, {"q": "acme"})
    assert len(first.context["page_obj"]) == 25
    assert b"Page 1 of 2" in first.content
    assert b'href="?q=acme&amp;page=2"' in first.content
    second = manager_client.get(INDEX, {"q": "acme", "page": "2"})
    assert names_on(second) == ["Acme 25"]


def test_it_shows_an_organisation_with_people_leads_and_notes(
    manager_client: Client,
    make_organisation: Callable[..., Organisation],
    make_person: Callable[..., Person],
    make_lead: Callable[..., Lead],
    make_note: Callable[..., Note],
) -> None:
    org = make_organisation(website="https://northwind.example", description="Tea\nand coffee")
    make_person("Ada", "Lovelace", organisation=org)
    make_lead("Tea contract", organisation=org)
    make_note("Met at the fair", organisation=org)
    content = manager_client.get(org.get_absolute_url()).content.decode()
    for text in ("Northwind Traders", "Ada Lovelace", "Tea contract", "Met at the fair"):
        assert text in content
    assert "Tea<br>and coffee" in content
    assert 'href="https://northwind.example" rel="noopener noreferrer nofollow"' in content


def test_it_answers_404_for_an_unknown_organisation(manager_client: Client) -> None:
    url = reverse("crm-organisation-show", args=["00000000-0000-0000-0000-000000000000"])
    assert manager_client.get(url).status_code == 404


def test_it_creates_an_organisation(manager_client: Client, manager) -> None:
    data = {"name": "Initech", "website": "initech.example", "description": ""}
    response = manager_client.post(CREATE, data, follow=True)
    org = Organisation.objects.get()
    assert response.redirect_chain == [(org.get_absolute_url(), 302)]
    assert b"Created Initech." in response.content
    assert org.website == "https://initech.example"
    assert org.owner == manager


def test_it_rejects_a_bad_website_and_saves_nothing(manager_client: Client) -> None:
    data = {"name": "Initech", "website": "javascript:alert(1)", "description": ""}
    response = manager_client.post(CREATE, data)
    assert response.status_code == 200
    assert "Enter a valid URL." in response.content.decode()
    assert 'id="id_website_error"' in response.content.decode()
    assert Organisation.objects.count() == 0


def test_it_requires_a_name(manager_client: Client) -> None:
    response = manager_client.post(CREATE, {"name": "", "website": "", "description": ""})
    assert "This field is required." in response.content.decode()
    assert Organisation.objects.count() == 0


def test_it_edits_an_organisation(
    manager_client: Client, make_organisation: Callable[..., Organisation]
) -> None:
    org = make_organisation()
    url = reverse("crm-organisation-edit", args=[org.external_id])
    assert b'value="Northwind Traders"' in manager_client.get(url).content
    data = {"name": "Northwind Ltd", "website": "", "description": "Renamed"}
    response = manager_client.post(url, data, follow=True)
    assert b"Saved Northwind Ltd." in response.content
    org.refresh_from_db()
    assert (org.name, org.description) == ("Northwind Ltd", "Renamed")


def test_it_keeps_the_old_name_in_the_heading_when_an_edit_fails(
    manager_client: Client, make_organisation: Callable[..., Organisation]
) -> None:
    org = make_organisation()
    url = reverse("crm-organisation-edit", args=[org.external_id])
    response = manager_client.post(url, {"name": "", "website": "", "description": ""})
    assert b"<h1>Edit Northwind Traders</h1>" in response.content
    org.refresh_from_db()
    assert org.name == "Northwind Traders"


def test_it_asks_before_deleting_and_deletes_on_post(
    manager_client: Client,
    make_organisation: Callable[..., Organisation],
    make_person: Callable[..., Person],
) -> None:
    org = make_organisation()
    person = make_person(organisation=org)
    url = reverse("crm-organisation-delete", args=[org.external_id])
    confirm = manager_client.get(url)
    assert b"Delete Northwind Traders?" in confirm.content
    assert Organisation.objects.exists()

    response = manager_client.post(url, follow=True)
    assert response.redirect_chain == [(INDEX, 302)]
    assert b"Deleted Northwind Traders." in response.content
    assert not Organisation.objects.exists()
    person.refresh_from_db()
    assert person.organisation is None
