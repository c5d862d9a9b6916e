"""The conversation page: transcript, reply box and the visitor sidebar."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from crm.chat.models import ChatVisitor
from crm.chat.services import chat_service
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import (
    CHROME_ON_WINDOWS,
    INDEX,
    client_for,
    new_chat,
    show_url,
    user_with,
)

pytestmark = pytest.mark.django_db


class ConversationPageTests:
    def test_it_shows_the_transcript_with_internal_notes(
        self, world: ChatWorld, owner: Client
    ) -> None:
        conv = new_chat(world.widget, name="Ann", says="Do you ship to Canada?")
        chat_service.send_agent_message(conversation=conv, agent=world.owner, body="Yes, we do!")
        chat_service.send_system_message(conversation=conv, body="VIP customer", internal=True)

        response = owner.get(show_url(conv))

        assert response.status_code == 200
        html = response.content.decode()
        order = [html.index(t) for t in ("Do you ship to Canada?", "Yes, we do!", "VIP customer")]
        assert order == sorted(order)
        assert "Olivia joined the chat." in html
        assert re.search(r'class="bubble system internal" data-seq="4"', html)
        assert "only agents see this" in html
        assert '<span class="who">Ann</span>' in html
        assert '<span class="who">Olivia</span>' in html
        config = json.loads(response.context["client_config"])
        assert config == {"conversation": str(conv.external_id), "lastSeq": 4, "canReply": True}

    def test_it_shows_the_visitor_sidebar(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(
            world.widget, name="Ann", email="ann@example.com", says="hi", ua=CHROME_ON_WINDOWS
        )
        visitor = ChatVisitor.objects.get(pk=conv.visitor_id)
        for i, url in enumerate(("https://shop.example/", "https://shop.example/pricing")):
            chat_service.record_page_view(visitor=visitor, url=url, title=f"Page {i}")
        chat_service.record_page_view(visitor=visitor, url="https://shop.example/checkout")

        response = owner.get(show_url(conv))

        html = response.content.decode()
        facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", html))
        # <wbr> lets a long address wrap before "@" and dots; it adds no character.
        assert facts["Email"].replace("<wbr>", "") == "ann@example.com"
        assert facts["Browser"] == "Chrome"
        assert facts["System"] == "Windows"
        assert "https://shop.example/checkout" in facts["Page"]
        trail = html[html.index('<ol class="trail">') :]
        trail = trail[: trail.index("</ol>")]
        assert re.findall(r'<a href="([^"]+)"', trail) == [
            "https://shop.example/checkout",
            "https://shop.example/pricing",
            "https://shop.example/",
        ]
        assert ">Page 1</a>" in trail  # titles are shown where known
        assert "Promote to person" in html

    def test_it_shows_the_country_with_its_flag(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, name="Ann", says="hi")
        ChatVisitor.objects.filter(pk=conv.visitor_id).update(country_code="GB")

        page = owner.get(show_url(conv)).content.decode()
        listing = owner.get(INDEX).content.decode()

        facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", page))
        assert facts["Country"] == "\U0001f1ec\U0001f1e7 GB"
        assert "\U0001f1ec\U0001f1e7 GB" in listing

    def test_it_lists_the_visitors_other_conversations(
        self, world: ChatWorld, owner: Client
    ) -> None:
        earlier = new_chat(world.widget, says="first visit")
        chat_service.close_conversation(conversation=earlier, by=world.owner)
        later = chat_service.open_conversation(
            visitor=ChatVisitor.objects.get(pk=earlier.visitor_id)
        )
        assert later.pk != earlier.pk

        html = owner.get(show_url(later)).content.decode()

        others = html[html.index("<h3>Other chats</h3>") :]
        assert f'href="{show_url(earlier)}">{earlier.chat_id}</a>' in others
        assert "Closed" in others
        assert (
            "<h3>Other chats</h3>"
            not in owner.get(show_url(new_chat(world.widget))).content.decode()
        )

    def test_it_hides_reply_and_actions_from_read_only_agents(self, world: ChatWorld) -> None:
        conv = new_chat(world.widget, says="hi")
        viewer = client_for(user_with("vera", "view_chat", "view_all_chats"))

        response = viewer.get(show_url(conv))

        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="reply"' not in html and "Convert to lead" not in html
        assert json.loads(response.context["client_config"])["canReply"] is False

    def test_a_closed_chat_disables_the_reply_box(self, world: ChatWorld, owner: Client) -> None:
        conv = new_chat(world.widget, says="hi")
        chat_service.close_conversation(conversation=conv, by=world.owner)
        html = owner.get(show_url(conv)).content.decode()
        assert re.search(r'<textarea id="reply-body"[^>]* disabled>', html)
        assert "Reopen it to reply" in html and ">Reopen</button>" in html
