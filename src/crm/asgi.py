"""ASGI entry point: Django for HTTP, the chat sockets for WebSockets.

Django is set up (``get_asgi_application``) before the WebSocket routes are
imported, because the sockets import models.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from crm.chat.routing import websocket_urlpatterns  # noqa: E402
from crm.core.http_limit import ConcurrencyLimit  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bursts wait in the event loop, not in hundreds of threads (http_limit.py).
        "http": ConcurrencyLimit(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

__all__ = ["application", "django_asgi_app"]
