"""ASGI entry point: Django for HTTP, Channels for WebSockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
django_asgi_app = get_asgi_application()

from crm.routing import application  # noqa: E402  (Django must be set up first)

__all__ = ["application", "django_asgi_app"]
