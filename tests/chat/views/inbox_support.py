"""Shared helpers of the inbox view tests: URLs, clients, chats, flash messages."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from django.test import Client
from django.urls import reverse

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatWidget
from crm.chat.services import chat_service

INDEX = reverse("crm-chat-index")
UNREAD = reverse("crm-chat-unread")
CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
XSS_NAME = "<img src=x onerror=alert(1)>"


# ------------------------------------------------------------------------ helpers


def client_for(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


def show_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-show", args=[conv.external_id])


def action_url(conv: ChatConversation, name: str) -> str:
    return reverse("crm-chat-action", args=[conv.external_id, name])


def send_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-send", args=[conv.external_id])


def read_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-read", args=[conv.external_id])


def messages_url(conv: ChatConversation) -> str:
    return reverse("crm-chat-messages", args=[conv.external_id])


def flashes(client: Client, response: Any) -> list[str]:
    """The flash messages the page redirected to shows, as "level: text" (consumes them)."""
    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    return [f"{tag}: {text}" for tag, text in re.findall(r'<p class="flash-(\w+)">(.*?)</p>', html)]


def post_json(client: Client, url: str, data: Any) -> Any:
    body = data if isinstance(data, str | bytes) else json.dumps(data)
    return client.post(url, body, content_type="application/json")


def new_chat(
    widget: ChatWidget, *, name: str = "", email: str = "", says: str = "", ua: str = ""
) -> ChatConversation:
    """A fresh visitor on ``widget`` with an open conversation (and a first message)."""
    visitor, _ = chat_service.identify_visitor(widget=widget, token=None, user_agent=ua)
    if name or email:
        chat_service.update_visitor_details(visitor=visitor, name=name, email=email)
    conv = chat_service.open_conversation(visitor=visitor)
    if says:
        chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=says)
    return conv


def visitor_says(conv: ChatConversation, body: str) -> ChatMessage:
    visitor = ChatVisitor.objects.get(pk=conv.visitor_id)
    return chat_service.send_visitor_message(conversation=conv, visitor=visitor, body=body).message


def listed(response: Any) -> list[str]:
    return [row.chat_id for row in response.context["page"].rows]


def bodies(conv: ChatConversation, *, sender_type: str | None = None) -> list[str]:
    qs = ChatMessage.objects.filter(conversation=conv).order_by("seq")
    if sender_type:
        qs = qs.filter(sender_type=sender_type)
    return list(qs.values_list("body", flat=True))


def user_with(username: str, *codenames: str) -> AbstractUser:
    """A user without a role, holding exactly the given chat permissions."""
    user = get_user_model().objects.create_user(username=username, password="x")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="crm_chat", codename__in=codenames)
    )
    return user
