"""People pages: list, search, pagination, detail, create, edit and delete."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.core.forms import PhoneFormSet
from crm.core.models import Email, Lead, Note, Organisation, Person, Phone

pytestmark = pytest.mark.django_db

INDEX = reverse("crm-person-index")
CREATE = reverse("crm-person-create")


def person_data(**fields: str) -> dict[str, str]:
    """A valid create POST: one email and one phone row, plus ``fields`` on top."""
    data = {
        "first_name": "Grace",
        "last_name": "Hopper",
        "title": "Rear admiral",
        "organisation": "",
        "description": "",
        "emails-TOTAL_FORMS": "1",
        "emails-INITIAL_FORMS": "0",
        "emails-0-address": "grace@example.com",
        "emails-0-type": "work",
        "emails-0-primary": "on",
        "phones-TOTAL_FORMS": "1",
        "phones-INITIAL_FORMS": "0",
        "phones-0-number": "+1 202 555 0142",
        "phones-0-type": "mobile",
    }
    data.update(fields)
    return data


def names_on(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.name for p in response.context["page_obj"]]


# List and search


def test_it_lists_people_with_organisation_and_primary_email(
    manager_client: Client, make_person: Callable[..., Person], make_organisation
) -> None:
    org = make_organisation("Northwind Traders")
    make_person("Ada", "Lovelace", email="ada@northwind.example", organisation=org)
    response = manager_client.get(INDEX)
    assert response.status_code == 200
    assert names_on(response) == ["Ada Lovelace"]
    assert b"Northwind Traders" in response.content
    assert b"ada@northwind.example" in response.content
    assert b"1 person" in response.content


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ada", ["Ada Lovelace"]),
        ("hopp", ["Grace Hopper"]),
        ("Ada Lovelace", ["Ada Lovelace"]),
        ("grace@globex", ["Grace Hopper"]),
        ("northwind", ["Ada Lovelace"]),
        ("nobody-like-this", []),
    ],
)
def test_it_searches_by_name_email_and_organisation(
    manager_client: Client,
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
    q: str,
    expected: list[str],
) -> None:
    make_person("Ada", "Lovelace", organisation=make_organisation("Northwind Traders"))
    make_person("Grace", "Hopper", email="grace@globex.example")
    response = manager_client.get(INDEX, {"q": q})
    assert names_on(response) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("+44 20 7946 0001", ["Ada Lovelace"]),
        ("0044-20-7946-0001", []),  # another prefix: not the same digits, nor their end
        ("442079460001", ["Ada Lovelace"]),
        ("(20) 7946 0001", ["Ada Lovelace"]),
        ("7946 0001", ["Ada Lovelace"]),
        ("555 0142", ["Grace Hopper"]),
        ("0001", []),  # four digits: a name search, and no name has them
        ("12345", []),
    ],
)
def test_it_finds_a_person_by_phone_however_it_is_typed(
    manager_client: Client, make_person: Callable[..., Person], q: str, expected: list[str]
) -> None:
    ada = make_person("Ada", "Lovelace")
    Phone.objects.create(person=ada, number="+44 20 7946 0001", primary=True)
    grace = make_person("Grace", "Hopper")
    Phone.objects.create(person=grace, number="+1 202-555-0142")
    assert Phone.objects.get(person=ada).digits == "442079460001"
    response = manager_client.get(INDEX, {"q": q})
    assert names_on(response) == expected


def test_changing_a_number_keeps_its_digits_in_step(make_person: Callable[..., Person]) -> None:
    phone = Phone.objects.create(person=make_person(), number="+1 202 555 0142")
    phone.number = "020 7946 0001"
    phone.save(update_fields=["number"])
    phone.refresh_from_db()
    assert phone.digits == "02079460001"


def test_it_lists_a_person_with_two_matching_emails_once(
    manager_client: Client, make_person: Callable[..., Person]
) -> None:
    person = make_person("Ada", "Lovelace", email="ada@work.example")
    Email.objects.create(person=person, address="ada@home.example", type="home")
    response = manager_client.get(INDEX, {"q": "ada@"})
    assert names_on(response) == ["Ada Lovelace"]
    assert response.context["page_obj"].paginator.count == 1


def test_it_shows_an_empty_state(manager_client: Client) -> None:
    response = manager_client.get(INDEX)
    assert b"No people yet." in response.content
    response = manager_client.get(INDEX, {"q": "<b>zed</b>"})
    assert b"No people match" in response.content
    assert b"&lt;b&gt;zed&lt;/b&gt;" in response.content


def test_it_paginates_25_a_page_and_keeps_the_search(
    manager_client: Client, make_person: Callable[..., Person]
) -> None:
    for i in range(30):
        make_person("Member", f"{i:02}")
    make_person("Zed", "Outsider")

    first = manager_client.get(INDEX, {"q": "member"})
    assert len(first.context["page_obj"]) == 25
    assert b"30 people" in first.content
    assert b'<span aria-current="page">Page 1 of 2</span>' in first.content
    assert b'href="?q=member&amp;page=2"' in first.content

    second = manager_client.get(INDEX, {"q": "member", "page": "2"})
    assert names_on(second) == [f"Member {i}" for i in range(25, 30)]
    assert b"Page 2 of 2" in second.content
    assert b'href="?q=member&amp;page=1"' in second.content


def test_it_shows_the_last_page_for_a_page_number_too_high(
    manager_client: Client, make_person: Callable[..., Person]
) -> None:
    make_person()
    response = manager_client.get(INDEX, {"page": "99"})
    assert response.status_code == 200
    assert names_on(response) == ["Ada Lovelace"]


def test_it_lists_in_a_constant_number_of_queries(
    manager_client: Client,
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert manager_client.get(INDEX).status_code == 200
        return len(ctx.captured_queries)

    org = make_organisation()
    make_person("P", "0", email="p0@example.com", organisation=org)
    one = count_queries()
    for i in range(1, 25):
        make_person("P", str(i), email=f"p{i}@example.com", organisation=make_organisation())
    assert count_queries() == one


# Detail


def test_it_shows_a_person_with_leads_and_notes(
    manager_client: Client,
    manager,
    make_person: Callable[..., Person],
    make_lead: Callable[..., Lead],
    make_note: Callable[..., Note],
) -> None:
    person = make_person(email="ada@example.com", title="Analyst")
    Phone.objects.create(person=person, number="+44 20 7946 0001")
    make_lead("Engine order", person=person)
    make_note("First call", person=person, author=manager)
    make_note("Second call", person=person, author=manager)

    response = manager_client.get(person.get_absolute_url())
    assert response.status_code == 200
    content = response.content.decode()
    for text in ("Ada Lovelace", "Analyst", "ada@example.com", "+44 20 7946 0001", "Engine order"):
        assert text in content
    assert content.index("Second call") < content.index("First call")
    assert "Manon" in content


def test_it_escapes_what_users_typed(
    manager_client: Client, make_person: Callable[..., Person], make_note: Callable[..., Note]
) -> None:
    person = make_person("<img src=x>", description="<script>alert(1)</script>\nline two")
    make_note("<script>alert(2)</script>", person=person)
    content = manager_client.get(person.get_absolute_url()).content.decode()
    assert "<script>alert" not in content
    assert "<img src=x>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;<br>line two" in content


def test_it_answers_404_for_an_unknown_person(manager_client: Client) -> None:
    url = reverse("crm-person-show", args=["00000000-0000-0000-0000-000000000000"])
    assert manager_client.get(url).status_code == 404


# Create


def test_it_creates_a_person_with_email_and_phone(
    manager_client: Client, manager, make_organisation: Callable[..., Organisation]
) -> None:
    org = make_organisation()
    response = manager_client.post(CREATE, person_data(organisation=str(org.pk)), follow=True)
    person = Person.objects.get()
    assert response.redirect_chain == [(person.get_absolute_url(), 302)]
    assert b"Created Grace Hopper." in response.content
    assert person.organisation == org
    assert person.owner == manager
    assert [(e.address, e.primary) for e in person.emails.all()] == [("grace@example.com", True)]
    assert [p.number for p in person.phones.all()] == ["+1 202 555 0142"]


def test_it_shows_an_empty_form_with_labels(manager_client: Client) -> None:
    content = manager_client.get(CREATE).content.decode()
    for field_id in ("id_first_name", "id_emails-0-address", "id_phones-0-number"):
        assert f'for="{field_id}"' in content
        assert f'id="{field_id}"' in content


def test_it_skips_blank_rows(manager_client: Client) -> None:
    manager_client.post(
        CREATE,
        person_data(
            **{
                "emails-0-address": "",
                "emails-0-primary": "",
                "phones-0-number": "",
                "phones-0-type": "work",
            }
        ),
    )
    assert Person.objects.count() == 1
    assert Email.objects.count() == Phone.objects.count() == 0


def test_it_rejects_a_bad_email_and_saves_nothing(manager_client: Client) -> None:
    response = manager_client.post(CREATE, person_data(**{"emails-0-address": "not-an-email"}))
    assert response.status_code == 200
    assert Person.objects.count() == Email.objects.count() == Phone.objects.count() == 0
    content = response.content.decode()
    assert "Enter a valid email address." in content
    assert 'id="id_emails-0-address_error"' in content
    assert 'aria-invalid="true"' in content
    # What the user typed is kept, so fixing the typo is all it takes.
    assert 'value="Grace"' in content


def test_it_requires_a_first_name(manager_client: Client) -> None:
    response = manager_client.post(CREATE, person_data(first_name=""))
    assert "This field is required." in response.content.decode()
    assert Person.objects.count() == 0


def test_it_rejects_two_primary_emails(manager_client: Client) -> None:
    data = person_data(
        **{
            "emails-TOTAL_FORMS": "2",
            "emails-1-address": "grace@home.example",
            "emails-1-type": "home",
            "emails-1-primary": "on",
        }
    )
    response = manager_client.post(CREATE, data)
    assert "Mark at most one as primary." in response.content.decode()
    assert Person.objects.count() == 0


def test_it_saves_nothing_when_a_later_row_fails_to_save(
    manager_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self, commit: bool = True) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(PhoneFormSet, "save", fail)
    with pytest.raises(RuntimeError):
        manager_client.post(CREATE, person_data())
    assert Person.objects.count() == Email.objects.count() == 0


# Edit


def test_it_edits_a_person_and_their_emails(
    manager_client: Client, make_person: Callable[..., Person]
) -> None:
    person = make_person("Ada", "Lovelace", email="ada@old.example")
    old = person.emails.get()
    second = Email.objects.create(person=person, address="ada@gone.example")
    data = person_data(
        first_name="Augusta",
        **{
            "emails-TOTAL_FORMS": "3",
            "emails-INITIAL_FORMS": "2",
            "emails-0-id": str(old.pk),
            "emails-0-address": "ada@new.example",
            "emails-1-id": str(second.pk),
            "emails-1-address": second.address,
            "emails-1-type": "work",
            "emails-1-DELETE": "on",
            "emails-2-address": "ada@extra.example",
            "emails-2-type": "home",
            "phones-0-number": "",
            "phones-0-type": "work",
        },
    )
    response = manager_client.post(reverse("crm-person-edit", args=[person.external_id]), data)
    assert response.status_code == 302
    person.refresh_from_db()
    assert person.name == "Augusta Hopper"
    assert sorted(person.emails.values_list("address", flat=True)) == [
        "ada@extra.example",
        "ada@new.example",
    ]


def test_it_shows_the_edit_form_filled_in(
    manager_client: Client, make_person: Callable[..., Person]
) -> None:
    person = make_person("Ada", "Lovelace", email="ada@example.com")
    response = manager_client.get(reverse("crm-person-edit", args=[person.external_id]))
    content = response.content.decode()
    assert "Edit Ada Lovelace" in content
    assert 'value="ada@example.com"' in content
    assert "Remove" in content


# Delete


def test_it_asks_before_deleting(
    manager_client: Client, make_person: Callable[..., Person]
) -> None:
    person = make_person()
    url = reverse("crm-person-delete", args=[person.external_id])
    response = manager_client.get(url)
    assert response.status_code == 200
    assert b"Delete Ada Lovelace?" in response.content
    assert Person.objects.filter(pk=person.pk).exists()


def test_it_deletes_on_post_and_keeps_their_leads(
    manager_client: Client, make_person: Callable[..., Person], make_lead: Callable[..., Lead]
) -> None:
    person = make_person(email="ada@example.com")
    lead = make_lead(person=person)
    url = reverse("crm-person-delete", args=[person.external_id])
    response = manager_client.post(url, follow=True)
    assert response.redirect_chain == [(INDEX, 302)]
    assert b"Deleted Ada Lovelace." in response.content
    assert Person.objects.count() == Email.objects.count() == 0
    lead.refresh_from_db()
    assert lead.person is None
