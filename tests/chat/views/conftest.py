"""Fixtures of the inbox view tests: a logged-in owner and employee."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import client_for


@pytest.fixture
def owner(world: ChatWorld) -> Client:
    return client_for(world.owner)


@pytest.fixture
def employee(world: ChatWorld) -> Client:
    return client_for(world.employee)


# --------------------------------------------------------------------------- list
