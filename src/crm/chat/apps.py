from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "crm.chat"
    label = "crm_chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from crm.chat import revocation, widget_settings
        from crm.chat.global_search import chat_section
        from crm.core.search import register

        revocation.connect_signals()
        widget_settings.connect_signals()
        register(chat_section, order=10)

    def load_demo(self) -> list[str]:
        """``crm demo`` hook: the demo widget and a few conversations (lines to print)."""
        from crm.chat.demo import load_chat_demo

        return load_chat_demo()
