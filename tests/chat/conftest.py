"""Shared chat fixtures: two agents, two widgets and a visitor on each (a foreign tenant)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import AbstractUser

from crm.chat.models import ChatConversation, ChatVisitor, ChatWidget
from crm.chat.services import ChatService, chat_service
from crm.core.services import create_agent


@dataclass
class ChatWorld:
    service: ChatService
    owner: AbstractUser
    employee: AbstractUser
    widget: ChatWidget
    other_widget: ChatWidget
    visitor: ChatVisitor
    token: str
    other_visitor: ChatVisitor
    other_token: str

    def conversation(self, visitor: ChatVisitor | None = None) -> ChatConversation:
        return self.service.open_conversation(visitor=visitor or self.visitor)


def make_world() -> ChatWorld:
    owner = create_agent(
        username="olivia", password="x", role="Owner", first_name="Olivia", validate=False
    )
    employee = create_agent(
        username="emma", password="x", role="Employee", first_name="Emma", validate=False
    )
    # Without an offline auto-reply, so tests see exactly the messages they send;
    # tests/chat/services/test_offline.py covers the auto-reply.
    widget = chat_service.create_widget(
        name="Main site", allowed_origins=["https://shop.example"], offline_message=""
    )
    other = chat_service.create_widget(name="Other site", offline_message="")
    visitor, token = chat_service.identify_visitor(widget=widget, token=None, ip_address="8.8.8.8")
    other_visitor, other_token = chat_service.identify_visitor(widget=other, token=None)
    assert token and other_token
    return ChatWorld(
        chat_service, owner, employee, widget, other, visitor, token, other_visitor, other_token
    )


@pytest.fixture
def world(db: None) -> ChatWorld:
    return make_world()


@pytest.fixture
def tworld(transactional_db: None) -> ChatWorld:
    """The same world, committed, for tests that use several threads or connections."""
    return make_world()
