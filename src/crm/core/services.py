"""Writes of the CRM core that more than one entry point needs (CLI, demo, tests)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from crm.core.roles import ADMIN, OWNER, ROLES


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
) -> AbstractUser:
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
    with transaction.atomic():
        user.is_staff = role in (OWNER, ADMIN)
        user.is_superuser = role == OWNER
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get(name=role))
    return user
