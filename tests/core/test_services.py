"""The core's writes (crm/core/services.py): people, organisations, leads and notes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError

from crm.core import services
from crm.core.models import Email, Lead, Note, Organisation, Person, Phone

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, int, int, int, int]:
    return (
        Person.objects.count(),
        Email.objects.count(),
        Phone.objects.count(),
        Lead.objects.count(),
        Note.objects.count(),
    )


class CreatePersonTests:
    def test_it_creates_a_person_with_emails_and_phones(self, owner, make_organisation):
        org = make_organisation()
        person = services.create_person(
            first_name="Grace",
            last_name="Hopper",
            organisation=org,
            owner=owner,
            email="grace@example.com",
            emails=[Email(address="grace@home.example", type="home")],
            phones=[Phone(number="+1 202 555 0142", primary=True)],
        )
        person.refresh_from_db()
        assert (person.name, person.organisation, person.owner) == ("Grace Hopper", org, owner)
        assert [(e.address, e.type, e.primary) for e in person.emails.all()] == [
            ("grace@example.com", "work", True),
            ("grace@home.example", "home", False),
        ]
        assert [p.number for p in person.phones.all()] == ["+1 202 555 0142"]

    @pytest.mark.parametrize(
        "fields",
        [
            {"first_name": ""},
            {"first_name": "G" * 121},
            {"email": "not-an-email"},
            {"emails": [Email(address="a@x.io", primary=True)]},  # a second primary
            {"phones": [Phone(number="1", type="fax")]},
            {"phones": [Phone(number="1", primary=True), Phone(number="2", primary=True)]},
        ],
    )
    def test_a_refused_person_leaves_nothing_behind(self, fields):
        with pytest.raises(ValidationError):
            services.create_person(**{"first_name": "Grace", "email": "g@x.io", **fields})
        assert _counts() == (0, 0, 0, 0, 0)

    def test_a_row_failing_when_saved_rolls_the_person_back(self, monkeypatch):
        def fail(self: Phone, *args: object, **kwargs: object) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr(Phone, "save", fail)
        with pytest.raises(RuntimeError):
            services.create_person(
                first_name="Grace", email="g@x.io", phones=[Phone(number="+1 202 555 0142")]
            )
        assert _counts() == (0, 0, 0, 0, 0)


class UpdatePersonTests:
    def test_it_changes_fields_adds_changes_and_removes_rows(self, make_person):
        person = make_person("Ada", "Lovelace", email="ada@old.example")
        old = person.emails.get()
        gone = Email.objects.create(person=person, address="ada@gone.example")
        old.address = "ada@new.example"
        services.update_person(
            person=person,
            data={"first_name": "Augusta"},
            emails=[old, Email(address="ada@extra.example", type="home")],
            removed=[gone],
        )
        person.refresh_from_db()
        assert person.name == "Augusta Lovelace"
        assert sorted(person.emails.values_list("address", flat=True)) == [
            "ada@extra.example",
            "ada@new.example",
        ]

    def test_it_counts_the_stored_primary_too(self, make_person):
        person = make_person(email="ada@example.com")
        with pytest.raises(ValidationError, match="at most one as primary"):
            services.update_person(
                person=person, data={}, emails=[Email(address="b@x.io", primary=True)]
            )
        assert list(person.emails.values_list("address", flat=True)) == ["ada@example.com"]

    def test_a_primary_may_move_to_another_row(self, make_person):
        person = make_person(email="ada@example.com")
        old = person.emails.get()
        old.primary = False
        services.update_person(
            person=person, data={}, emails=[old, Email(address="b@x.io", primary=True)]
        )
        assert list(person.emails.values_list("address", "primary")) == [
            ("b@x.io", True),
            ("ada@example.com", False),
        ]

    def test_a_refused_change_writes_nothing(self, make_person):
        person = make_person("Ada")
        with pytest.raises(ValidationError):
            services.update_person(person=person, data={"first_name": ""})
        assert Person.objects.get(pk=person.pk).first_name == "Ada"


class LeadTests:
    def test_it_creates_a_lead(self, owner, make_person):
        person = make_person()
        lead = services.create_lead(
            title="Fifty seats", person=person, owner=owner, source="chat", status="contacted"
        )
        lead.refresh_from_db()
        assert (lead.title, lead.person, lead.owner, lead.source, lead.status) == (
            "Fifty seats",
            person,
            owner,
            "chat",
            "contacted",
        )

    @pytest.mark.parametrize(
        "fields", [{"title": ""}, {"status": "maybe"}, {"source": "fax"}, {"title": "T" * 256}]
    )
    def test_a_refused_lead_leaves_nothing_behind(self, fields):
        with pytest.raises(ValidationError):
            services.create_lead(**{"title": "Fifty seats", **fields})
        assert Lead.objects.count() == 0

    def test_it_updates_and_deletes_a_lead_with_its_notes(self, make_lead, make_note):
        lead = make_lead()
        make_note(lead=lead)
        services.update_lead(lead=lead, data={"status": "won"})
        assert Lead.objects.get(pk=lead.pk).status == "won"
        services.delete_lead(lead=lead)
        assert _counts() == (0, 0, 0, 0, 0)


class NoteTests:
    @pytest.mark.parametrize("kind", ["person", "organisation", "lead"])
    def test_it_adds_a_note_to_each_kind_of_record(
        self, kind: str, owner, make_person, make_organisation, make_lead
    ):
        makers: dict[str, Callable[[], Person | Organisation | Lead]] = {
            "person": make_person,
            "organisation": make_organisation,
            "lead": make_lead,
        }
        parent = makers[kind]()
        note = services.create_note(parent=parent, content="Called back.", author=owner)
        note.refresh_from_db()
        assert (note.parent, note.content, note.author) == (parent, "Called back.", owner)

    def test_an_empty_note_is_refused(self, make_person):
        with pytest.raises(ValidationError):
            services.create_note(parent=make_person(), content="")
        assert Note.objects.count() == 0

    def test_a_note_needs_a_record_it_can_belong_to(self, owner):
        with pytest.raises(TypeError):
            services.create_note(parent=owner, content="Hi")  # type: ignore[arg-type]
        assert Note.objects.count() == 0

    def test_it_deletes_a_note(self, make_person, make_note):
        note = make_note(person=make_person())
        services.delete_note(note=note)
        assert Note.objects.count() == 0


class OrganisationTests:
    def test_it_creates_updates_and_deletes_keeping_its_people(self, owner, make_person):
        org = services.create_organisation(name="Northwind", website="https://nw.example")
        person = make_person(organisation=org)
        services.update_organisation(organisation=org, data={"name": "Northwind Traders"})
        assert Organisation.objects.get(pk=org.pk).name == "Northwind Traders"
        services.delete_organisation(organisation=org)
        person.refresh_from_db()
        assert person.organisation is None

    def test_a_refused_organisation_leaves_nothing_behind(self):
        with pytest.raises(ValidationError):
            services.create_organisation(name="Northwind", website="not a url")
        assert Organisation.objects.count() == 0
