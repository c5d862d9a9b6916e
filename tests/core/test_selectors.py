"""Read queries of the core: lookups return None instead of raising."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from crm.core import selectors
from crm.core.models import Lead, Note, Organisation, Person

pytestmark = pytest.mark.django_db


def test_it_returns_none_for_unknown_records() -> None:
    unknown = uuid.uuid4()
    assert selectors.person_get(external_id=unknown) is None
    assert selectors.organisation_get(external_id=unknown) is None
    assert selectors.lead_get(external_id=unknown) is None


def test_it_scopes_notes_to_their_parent(
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
    make_lead: Callable[..., Lead],
    make_note: Callable[..., Note],
) -> None:
    person, org, lead = make_person(), make_organisation(), make_lead()
    on_person = make_note(person=person)
    make_note(organisation=org)
    assert list(selectors.note_list(parent=person)) == [on_person]
    assert selectors.note_get(parent=person, note_id=on_person.pk) == on_person
    assert selectors.note_get(parent=lead, note_id=on_person.pk) is None


def test_it_refuses_notes_of_anything_else() -> None:
    with pytest.raises(TypeError):
        selectors.note_list(parent=object())  # type: ignore[arg-type]


def test_it_ignores_search_terms_beyond_the_limit(make_person: Callable[..., Person]) -> None:
    make_person("Ada", "Lovelace")
    many = "ada " * selectors.MAX_SEARCH_TERMS + "no-such-term"
    assert [p.name for p in selectors.person_list(search=many)] == ["Ada Lovelace"]
