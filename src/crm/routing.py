"""Protocol routing: HTTP goes to Django, WebSockets to the chat consumers."""

from __future__ import annotations

from channels.routing import ProtocolTypeRouter, URLRouter

from crm.asgi import django_asgi_app
from crm.chat.routing import websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
