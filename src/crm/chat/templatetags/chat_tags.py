"""Small display helpers for the inbox templates, and the chat's part of core pages."""

from __future__ import annotations

from django import template
from django.template.context import Context

from crm.chat.models import ChatConversation
from crm.chat.selectors import visible_conversations
from crm.core.models import Lead

register = template.Library()


@register.filter
def flag(country_code: str) -> str:
    """ "GB" -> the flag emoji (two regional indicator letters); "" for anything else."""
    code = (country_code or "").upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code)


@register.simple_tag(takes_context=True)
def lead_conversations(context: Context, lead: Lead) -> list[ChatConversation]:
    """The chats converted into ``lead`` that the viewing agent may open.

    A tag of the chat app, so the core's lead page can show them (inside
    ``{% haschatenabled %}``) without the core importing the chat module.
    """
    request = context.get("request")
    if request is None:
        return []
    return list(
        visible_conversations(agent=request.user)
        .filter(lead=lead)
        .select_related("visitor")
        .order_by("created_at")
    )
