"""Agents of each role, logged-in clients and small record factories for core tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.test import Client

from crm.core.models import Email, Lead, Note, Organisation, Person
from crm.core.roles import EMPLOYEE, MANAGER, OWNER
from crm.core.services import create_agent

PASSWORD = "not-a-real-secret-1"


def _client_for(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner(db: None) -> AbstractUser:
    return create_agent(
        username="olivia", password=PASSWORD, role=OWNER, first_name="Olivia", validate=False
    )


@pytest.fixture
def manager(db: None) -> AbstractUser:
    """Holds delete permissions through the Manager group, not as a superuser."""
    return create_agent(
        username="manon", password=PASSWORD, role=MANAGER, first_name="Manon", validate=False
    )


@pytest.fixture
def employee(db: None) -> AbstractUser:
    return create_agent(
        username="emma", password=PASSWORD, role=EMPLOYEE, first_name="Emma", validate=False
    )


@pytest.fixture
def nobody(db: None) -> AbstractUser:
    """A logged-in user in no group: no CRM permission at all."""
    return get_user_model().objects.create_user(username="nina", password=PASSWORD)


@pytest.fixture
def manager_client(manager: AbstractUser) -> Client:
    return _client_for(manager)


@pytest.fixture
def employee_client(employee: AbstractUser) -> Client:
    return _client_for(employee)


@pytest.fixture
def nobody_client(nobody: AbstractUser) -> Client:
    return _client_for(nobody)


@pytest.fixture
def make_organisation(db: None) -> Callable[..., Organisation]:
    def make(name: str = "Northwind Traders", **fields: Any) -> Organisation:
        return Organisation.objects.create(name=name, **fields)

    return make


@pytest.fixture
def make_person(db: None) -> Callable[..., Person]:
    def make(
        first_name: str = "Ada", last_name: str = "Lovelace", email: str = "", **fields: Any
    ) -> Person:
        person = Person.objects.create(first_name=first_name, last_name=last_name, **fields)
        if email:
            Email.objects.create(person=person, address=email, primary=True)
        return person

    return make


@pytest.fixture
def make_lead(db: None) -> Callable[..., Lead]:
    def make(title: str = "Fifty seats", **fields: Any) -> Lead:
        return Lead.objects.create(title=title, **fields)

    return make


@pytest.fixture
def make_note(db: None) -> Callable[..., Note]:
    def make(content: str = "Called, left a message.", **fields: Any) -> Note:
        return Note.objects.create(content=content, **fields)

    return make
