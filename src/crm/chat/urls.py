"""URLs of the chat module (gated by ``CRM_MODULES`` in ``ModuleGateMiddleware``)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, re_path

from crm.chat.api import api
from crm.chat.views import public

KEY = r"(?P<public_key>[A-Za-z0-9_-]{1,128})"

urlpatterns: list[URLPattern | URLResolver] = [
    re_path(rf"^p/chat/{KEY}\.js$", public.loader, name="crm-chat-loader"),
    re_path(rf"^p/chat/{KEY}$", public.widget_page, name="crm-chat-widget"),
    path("p/chat/", api.urls),
]
