"""URLs of the chat module (gated by ``CRM_MODULES`` in ``ModuleGateMiddleware``)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
