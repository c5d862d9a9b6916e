"""WebSocket routes of the chat module."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from django.urls import re_path

from crm.chat.realtime import AgentConsumer, VisitorConsumer

websocket_urlpatterns = [
    re_path(r"^p/chat/(?P<public_key>[A-Za-z0-9_-]{1,128})/ws$", VisitorConsumer.as_asgi()),
    # Only the agent socket reads the session cookie; the visitor socket never does.
    re_path(r"^crm/chat/ws$", AuthMiddlewareStack(AgentConsumer.as_asgi())),
]
