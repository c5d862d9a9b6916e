"""URLs of the chat module (gated by ``CRM_MODULES`` in ``ModuleGateMiddleware``)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, re_path

from crm.chat.api import api
from crm.chat.views import actions, inbox, inbox_json, public, widgets

# Any segment: a malformed key gets the same friendly 404s as an unknown one (the
# middleware never looks it up, so the views find no widget on the request).
KEY = r"(?P<public_key>[^/]+)"

urlpatterns: list[URLPattern | URLResolver] = [
    re_path(rf"^p/chat/{KEY}\.js$", public.loader, name="crm-chat-loader"),
    re_path(rf"^p/chat/{KEY}$", public.widget_page, name="crm-chat-widget"),
    path("p/chat/", api.urls),
    # Settings → Chat Widgets
    path("crm/chat-widgets/", widgets.widget_index, name="crm-chat-widget-index"),
    path("crm/chat-widgets/new/", widgets.widget_create, name="crm-chat-widget-create"),
    path(
        "crm/chat-widgets/<uuid:external_id>/edit/",
        widgets.widget_edit,
        name="crm-chat-widget-edit",
    ),
    path(
        "crm/chat-widgets/<uuid:external_id>/toggle/",
        widgets.widget_toggle,
        name="crm-chat-widget-toggle",
    ),
    path(
        "crm/chat-widgets/<uuid:external_id>/delete/",
        widgets.widget_delete,
        name="crm-chat-widget-delete",
    ),
    path(
        "crm/chat-widgets/<uuid:external_id>/restore/",
        widgets.widget_restore,
        name="crm-chat-widget-restore",
    ),
    path(
        "crm/chat-widgets/<uuid:external_id>/purge/",
        widgets.widget_purge,
        name="crm-chat-widget-purge",
    ),
    path(
        "crm/chat-widgets/<uuid:external_id>/regenerate-key/",
        widgets.widget_regenerate,
        name="crm-chat-widget-regenerate",
    ),
    # The inbox
    path("crm/chat/", inbox.inbox, name="crm-chat-index"),
    path("crm/chat/unread/", inbox_json.unread, name="crm-chat-unread"),
    path("crm/chat/<uuid:external_id>/", inbox.conversation, name="crm-chat-show"),
    path(
        "crm/chat/<uuid:external_id>/messages/",
        inbox_json.messages_since,
        name="crm-chat-messages",
    ),
    path("crm/chat/<uuid:external_id>/send/", inbox_json.send_message, name="crm-chat-send"),
    path("crm/chat/<uuid:external_id>/read/", inbox_json.mark_read, name="crm-chat-read"),
    path(
        "crm/chat/<uuid:external_id>/<slug:name>/",
        actions.action,
        name="crm-chat-action",
    ),
]
