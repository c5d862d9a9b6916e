"""Every write of the CRM core: agents, people, organisations, leads and notes.

The core pages, the CLI and the chat module (promoting a visitor, converting a
chat to a lead) all create records through these functions, so the rules for a
valid person or lead live once, here. Each function validates the whole record
first (``full_clean``, plus the rules a model can't express, such as one
primary email), then writes inside one transaction, so a refused record leaves
nothing half-written. Forms still validate for display (errors next to fields);
this is the last check before the database. Arguments are keyword-only;
``update_*`` take the changed fields as ``data`` (e.g. a form's ``cleaned_data``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from crm.core.models import Email, Lead, Note, Organisation, Person, Phone, Team
from crm.core.roles import ADMIN, OWNER, ROLES
from crm.core.selectors import note_parent_field
from crm.core.writes import write_transaction

M = TypeVar("M", bound=models.Model)


class AgentError(Exception):
    """An agent could not be created; the message is a full sentence for the user."""


def create_agent(
    *,
    username: str,
    password: str,
    role: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    validate: bool = True,
) -> User:
    """Create a user with a role; Owners are also staff and superusers (the admin)."""
    User = get_user_model()
    if role not in ROLES:
        raise AgentError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if User.objects.filter(username=username).exists():
        raise AgentError(f"An agent named {username!r} already exists.")
    user = User(username=username, email=email, first_name=first_name, last_name=last_name)
    if validate:
        try:
            validate_password(password, user)
            user.full_clean(exclude=["password"])
        except ValidationError as exc:
            raise AgentError(" ".join(exc.messages)) from exc
    with write_transaction():
        user.is_staff = role in (OWNER, ADMIN)
        user.is_superuser = role == OWNER
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get(name=role))
    return user


# ------------------------------------------------------------------- people


def one_primary(flags: Iterable[bool]) -> None:
    """A person's emails (or phones) have at most one primary: lists show the first only."""
    if sum(1 for flag in flags if flag) > 1:
        raise ValidationError(_("Mark at most one as primary."), code="primary")


def create_person(
    *,
    first_name: str,
    last_name: str = "",
    title: str = "",
    organisation: Organisation | None = None,
    description: str = "",
    owner: User | None = None,
    team: Team | None = None,
    email: str = "",
    emails: Iterable[Email] = (),
    phones: Iterable[Phone] = (),
) -> Person:
    """Create a person with their email addresses and phone numbers, all or nothing.

    ``email`` is a shortcut for one primary address; ``emails`` and ``phones`` are
    unsaved rows (e.g. from the page's formsets), whose ``person`` is set here.
    """
    person = Person(
        first_name=first_name,
        last_name=last_name,
        title=title,
        organisation=organisation,
        description=description,
        owner=owner,
        team=team,
    )
    rows = [Email(address=email, primary=True)] if email else []
    return _save_person(person, emails=[*rows, *emails], phones=list(phones), removed=[])


def update_person(
    *,
    person: Person,
    data: Mapping[str, Any],
    emails: Iterable[Email] = (),
    phones: Iterable[Phone] = (),
    removed: Iterable[Email | Phone] = (),
) -> Person:
    """Change a person's fields (``data``), add or change rows, delete ``removed`` ones."""
    for field, value in data.items():
        setattr(person, field, value)
    return _save_person(person, emails=list(emails), phones=list(phones), removed=list(removed))


def delete_person(*, person: Person) -> None:
    """Delete a person with their emails, phones and notes; their leads stay, unlinked."""
    with write_transaction():
        person.delete()


def _save_person(
    person: Person, *, emails: list[Email], phones: list[Phone], removed: list[Email | Phone]
) -> Person:
    # Everything is validated before the first write, so a bad row leaves no person
    # behind; the transaction covers a row that fails only when it is saved.
    person.full_clean()
    rows: list[Email | Phone] = [*emails, *phones]
    for row in rows:
        row.full_clean(exclude=["person"])
    one_primary(_primaries(person, emails, removed, Email))
    one_primary(_primaries(person, phones, removed, Phone))
    with write_transaction():
        person.save()
        for row in removed:
            row.delete()
        for row in rows:
            row.person = person
            row.save()
    return person


def _primaries(
    person: Person, rows: list[Any], removed: list[Email | Phone], model: type[Email | Phone]
) -> list[bool]:
    """Primary flags as they will be: the given rows plus the untouched stored ones."""
    flags = [row.primary for row in rows]
    if person.pk is not None:
        touched = [r.pk for r in [*rows, *removed] if isinstance(r, model) and r.pk]
        stored = model.objects.filter(person=person, primary=True).exclude(pk__in=touched)
        flags += [True] * stored.count()
    return flags


# ------------------------------------------------------------- organisations


def create_organisation(
    *,
    name: str,
    website: str = "",
    description: str = "",
    owner: User | None = None,
    team: Team | None = None,
) -> Organisation:
    organisation = Organisation(
        name=name, website=website, description=description, owner=owner, team=team
    )
    return _save(organisation)


def update_organisation(*, organisation: Organisation, data: Mapping[str, Any]) -> Organisation:
    for field, value in data.items():
        setattr(organisation, field, value)
    return _save(organisation)


def delete_organisation(*, organisation: Organisation) -> None:
    """Delete an organisation and its notes; its people and leads stay, unlinked."""
    with write_transaction():
        organisation.delete()


# -------------------------------------------------------------------- leads


def create_lead(
    *,
    title: str,
    description: str = "",
    person: Person | None = None,
    organisation: Organisation | None = None,
    owner: User | None = None,
    status: str = "new",
    source: str = "web",
    team: Team | None = None,
) -> Lead:
    lead = Lead(
        title=title,
        description=description,
        person=person,
        organisation=organisation,
        owner=owner,
        status=status,
        source=source,
        team=team,
    )
    return _save(lead)


def update_lead(*, lead: Lead, data: Mapping[str, Any]) -> Lead:
    for field, value in data.items():
        setattr(lead, field, value)
    return _save(lead)


def delete_lead(*, lead: Lead) -> None:
    """Delete a lead and its notes."""
    with write_transaction():
        lead.delete()


# -------------------------------------------------------------------- notes


def create_note(
    *, parent: Person | Organisation | Lead, content: str, author: User | None = None
) -> Note:
    """A note on exactly one person, organisation or lead (the database checks it too)."""
    note = Note(content=content, author=author, **{note_parent_field(parent): parent})
    return _save(note)


def delete_note(*, note: Note) -> None:
    with write_transaction():
        note.delete()


def _save(instance: M) -> M:
    instance.full_clean()
    with write_transaction():
        instance.save()
    return instance
