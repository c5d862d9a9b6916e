"""Small display helpers for the inbox templates, and the chat's part of core pages."""

from __future__ import annotations

import re

from django import template
from django.template.context import Context
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from crm.chat.models import ChatConversation
from crm.chat.selectors import visible_conversations
from crm.core.models import Lead

register = template.Library()

# Zero-width split points: before the "@" and before each dot of an address.
_ADDRESS_BREAKS = re.compile(r"(?=[@.])")


@register.filter
def flag(country_code: str) -> str:
    """ "GB" -> the flag emoji (two regional indicator letters); "" for anything else."""
    code = (country_code or "").upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code)


@register.filter
def email_breaks(address: str) -> SafeString:
    """An email address, escaped, with ``<wbr>`` before its "@" and dots.

    A long address in a narrow column then wraps between its parts
    ("katherine.johnson / @example.org") instead of mid-word; ``<wbr>`` adds no
    character, so the address copies unchanged.
    """
    if not address:
        return mark_safe("")
    return mark_safe("<wbr>".join(escape(part) for part in _ADDRESS_BREAKS.split(address)))


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
