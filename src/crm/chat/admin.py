"""Admin for the chat models: read-mostly; the only writes go through ChatService."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from crm.chat.models import (
    ChatConversation,
    ChatMessage,
    ChatVisitor,
    ChatVisitorPageView,
    ChatWidget,
)
from crm.chat.services import chat_service
from crm.core.admin import SafeLookupsAdmin


class ReadOnlyAdmin(SafeLookupsAdmin):
    """Rows written by the service are inspected here, never edited by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Not deleted"), ("yes", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in {"yes", "no"}:
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


@admin.register(ChatWidget)
class ChatWidgetAdmin(SafeLookupsAdmin):
    """Widgets can't be deleted here, on purpose.

    The admin's delete would destroy every visitor, conversation and message of the
    widget, and its confirmation page lists them as deleted: that is the purge.
    Deleting (soft), restoring and purging live in Settings → Chat Widgets, which
    say what each step keeps. A deleted widget is read-only here until restored.
    """

    list_display = ("name", "team", "position", "color", "is_active", "deleted_at", "created_at")
    list_filter = ("is_active", DeletedFilter, "position", "team")
    search_fields = ("name",)
    readonly_fields = ("external_id", "public_key", "embed_snippet", "deleted_at")
    fields = (
        "name", "team", "welcome_message", "color", "position", "allowed_origins", "is_active",
        "external_id", "public_key", "embed_snippet", "deleted_at",
    )  # fmt: skip

    @admin.display(description="Embed snippet")
    def embed_snippet(self, obj: ChatWidget) -> str:
        return obj.embed_snippet() if obj.pk else ""

    def save_model(self, request: HttpRequest, obj: ChatWidget, form: Any, change: bool) -> None:
        fields = {
            f: form.cleaned_data[f] for f in chat_service.WIDGET_FIELDS if f in form.cleaned_data
        }
        chat_service.update_widget(widget=obj, **fields)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.deleted_at is not None:
            return False  # ChatService refuses to change a deleted widget
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(admin.TabularInline):
    model = ChatMessage
    fields = ("seq", "sender_type", "sender_id", "body", "is_internal", "read_at", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("seq",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChatConversation)
class ChatConversationAdmin(ReadOnlyAdmin):
    list_display = ("chat_id", "widget", "visitor", "status", "user_assigned", "last_message_at")
    list_filter = ("status", "widget")
    search_fields = ("chat_id", "visitor__name", "visitor__email", "subject")
    list_select_related = ("widget", "visitor", "user_assigned")
    inlines = [MessageInline]


@admin.register(ChatVisitor)
class ChatVisitorAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "widget", "email", "country_code", "last_seen_at")
    search_fields = ("name", "email")
    list_select_related = ("widget",)
    exclude = ("visitor_token",)


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyAdmin):
    list_display = ("conversation", "seq", "sender_type", "body", "created_at")
    list_filter = ("sender_type",)
    search_fields = ("body",)
    list_select_related = ("conversation",)


@admin.register(ChatVisitorPageView)
class ChatVisitorPageViewAdmin(ReadOnlyAdmin):
    list_display = ("visitor", "url", "title", "viewed_at")
    search_fields = ("url", "title")
    list_select_related = ("visitor",)
