"""Idempotent demo data for the CRM core (the chat module adds its own)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from crm.core import services
from crm.core.models import Organisation, Phone, Team
from crm.core.roles import EMPLOYEE, OWNER

DEMO_USERNAME = "owner"
DEMO_PASSWORD = "owner-demo-1"

_ORGS = [
    ("Northwind Traders", "https://northwind.example"),
    ("Globex Corporation", "https://globex.example"),
    ("Initech", "https://initech.example"),
]
_PEOPLE = [
    ("Ada", "Lovelace", "ada@northwind.example", "+44 20 7946 0001", 0),
    ("Grace", "Hopper", "grace@globex.example", "+1 202 555 0142", 1),
    ("Alan", "Turing", "alan@initech.example", "+44 161 496 0733", 2),
    ("Katherine", "Johnson", "katherine@globex.example", "+1 757 555 0190", 1),
]


def ensure_demo_owner() -> User:
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = services.create_agent(
            username=DEMO_USERNAME,
            password=DEMO_PASSWORD,
            role=OWNER,
            email="owner@crm.example",
            first_name="Olivia",
            last_name="Owner",
            validate=False,
        )
    return user


@transaction.atomic
def load_core_demo() -> User:
    """Create the demo owner, a team, an employee and a few records, once."""
    owner = ensure_demo_owner()
    team, _ = Team.objects.get_or_create(name="Support")
    team.members.add(owner)
    User = get_user_model()
    if not User.objects.filter(username="emma").exists():
        emma = services.create_agent(
            username="emma",
            password="emma-demo-1",
            role=EMPLOYEE,
            email="emma@crm.example",
            first_name="Emma",
            last_name="Employee",
            validate=False,
        )
        team.members.add(emma)
    if Organisation.objects.exists():
        return owner
    orgs = [
        services.create_organisation(name=n, website=w, owner=owner, team=team) for n, w in _ORGS
    ]
    for first, last, email, phone, org in _PEOPLE:
        person = services.create_person(
            first_name=first,
            last_name=last,
            organisation=orgs[org],
            owner=owner,
            team=team,
            email=email,
            phones=[Phone(number=phone, primary=True)],
        )
        lead = services.create_lead(
            title=f"{orgs[org].name}: enquiry from {first}",
            person=person,
            organisation=orgs[org],
            owner=owner,
            team=team,
            source="web",
        )
        services.create_note(
            parent=lead, author=owner, content=f"First call with {first} went well."
        )
    return owner
