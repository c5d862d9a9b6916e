"""Small display helpers for the inbox templates."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def flag(country_code: str) -> str:
    """ "GB" -> the flag emoji (two regional indicator letters); "" for anything else."""
    code = (country_code or "").upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code)
