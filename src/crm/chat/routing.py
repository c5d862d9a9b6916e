"""WebSocket routes of the chat module."""

from __future__ import annotations

websocket_urlpatterns: list = []
