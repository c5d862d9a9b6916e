"""Notes on people, organisations and leads: add and delete, by POST only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from crm.core.models import Lead, Note, Organisation, Person

pytestmark = pytest.mark.django_db

Parent = Person | Organisation | Lead


@pytest.fixture(params=["person", "organisation", "lead"])
def parent(
    request: pytest.FixtureRequest,
    make_person: Callable[..., Person],
    make_organisation: Callable[..., Organisation],
    make_lead: Callable[..., Lead],
) -> Parent:
    return {"person": make_person, "organisation": make_organisation, "lead": make_lead}[
        request.param
    ]()


def kind(parent: Parent) -> str:
    return parent._meta.model_name  # type: ignore[return-value]


def create_url(parent: Parent) -> str:
    return reverse(f"crm-{kind(parent)}-note-create", args=[parent.external_id])


def delete_url(parent: Parent, note: Note) -> str:
    return reverse(f"crm-{kind(parent)}-note-delete", args=[parent.external_id, note.pk])


def test_it_adds_a_note_by_its_author(manager_client: Client, manager, parent: Parent) -> None:
    response = manager_client.post(create_url(parent), {"content": "Call back on Monday"})
    assert response.status_code == 302
    assert response["Location"] == f"{parent.get_absolute_url()}#notes"
    note = Note.objects.get()
    assert (note.parent, note.author, note.content) == (parent, manager, "Call back on Monday")
    page = manager_client.get(response["Location"]).content.decode()
    assert "Note added." in page
    assert "Call back on Monday" in page


def test_it_lists_notes_newest_first_with_author_and_time(
    manager_client: Client, manager, parent: Parent, make_note: Callable[..., Note]
) -> None:
    make_note("Older", author=manager, **{kind(parent): parent})
    make_note("Newer\nsecond line", author=None, **{kind(parent): parent})
    content = manager_client.get(parent.get_absolute_url()).content.decode()
    assert content.index("Newer") < content.index("Older")
    assert "<p>Newer<br>second line</p>" in content
    assert "Manon" in content and "Former agent" in content
    assert '<time datetime="' in content


def test_it_rejects_an_empty_note_and_shows_the_page_again(
    manager_client: Client, parent: Parent
) -> None:
    response = manager_client.post(create_url(parent), {"content": "   "})
    assert response.status_code == 200
    assert 'id="id_content_error"' in response.content.decode()
    assert "This field is required." in response.content.decode()
    assert Note.objects.count() == 0


def test_it_deletes_a_note_on_post(
    manager_client: Client, parent: Parent, make_note: Callable[..., Note]
) -> None:
    note = make_note(**{kind(parent): parent})
    assert manager_client.get(delete_url(parent, note)).status_code == 405
    assert Note.objects.exists()
    response = manager_client.post(delete_url(parent, note), follow=True)
    assert response.redirect_chain == [(f"{parent.get_absolute_url()}#notes", 302)]
    assert b"Note deleted." in response.content
    assert not Note.objects.exists()


def test_it_refuses_to_add_a_note_on_get(manager_client: Client, parent: Parent) -> None:
    assert manager_client.get(create_url(parent)).status_code == 405


def test_it_answers_404_for_a_note_of_another_record(
    manager_client: Client, make_person: Callable[..., Person], make_note: Callable[..., Note]
) -> None:
    ada, grace = make_person("Ada"), make_person("Grace")
    note = make_note(person=grace)
    assert manager_client.post(delete_url(ada, note)).status_code == 404
    assert Note.objects.exists()


def test_it_needs_the_parents_view_permission_too(
    make_person: Callable[..., Person],
) -> None:
    user = get_user_model().objects.create_user(username="notes-only")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_note", "delete_note", "view_note"])
    )
    client = Client()
    client.force_login(user)
    person = make_person()
    assert client.post(create_url(person), {"content": "Hi"}).status_code == 403
    assert Note.objects.count() == 0
