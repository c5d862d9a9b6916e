"""Module gating: `CRM_MODULES` without "chat" removes the chat module everywhere."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.template import Context, Template
from django.test import Client

from crm.asgi import application
from crm.chat.services import chat_service
from crm.core.services import create_agent


@pytest.fixture
def owner_client(db: None) -> Client:
    owner = create_agent(username="olivia", password="x", role="Owner", validate=False)
    client = Client()
    client.force_login(owner)
    return client


TAG = Template("before{% haschatenabled %}<b>chat</b>{% endhaschatenabled %}after")


@pytest.mark.parametrize("modules", [["chat"], []])
def test_the_template_tag_follows_the_setting(settings, modules: list[str]) -> None:
    settings.CRM_MODULES = modules
    expected = "before<b>chat</b>after" if modules else "beforeafter"
    assert TAG.render(Context()) == expected


def test_enabled_chat_shows_in_the_sidebar_and_answers(owner_client: Client) -> None:
    page = owner_client.get("/crm/").content.decode()
    assert 'data-nav="chat"' in page
    assert owner_client.get("/crm/chat/").status_code == 200
    assert owner_client.get("/crm/chat-widgets/").status_code == 200


def test_disabled_chat_disappears_and_answers_404(owner_client: Client, settings) -> None:
    widget = chat_service.create_widget(name="Shop")
    settings.CRM_MODULES = []
    page = owner_client.get("/crm/").content.decode()
    assert 'data-nav="chat"' not in page and "Chat Widgets" not in page
    assert "agent.js" not in page  # no chat socket is opened either
    for url in (
        "/crm/chat/",
        "/crm/chat-widgets/",
        f"/p/chat/{widget.public_key}.js",
        f"/p/chat/{widget.public_key}",
        f"/p/chat/{widget.public_key}/api/visitor",
    ):
        assert owner_client.get(url).status_code == 404, url
    # People and the rest of the CRM are untouched.
    assert owner_client.get("/crm/people/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_disabled_chat_refuses_sockets(settings) -> None:
    settings.CRM_MODULES = []
    comm = WebsocketCommunicator(application, "/p/chat/abc/ws", headers=[(b"host", b"testserver")])
    connected, code = await comm.connect()
    assert not connected and code == 4404
