"""What text the chat accepts, checked before any write.

Shared by messages (bodies, client ids, subjects) and visitors (URLs), so that a
limit or a forbidden character is decided once. Each function returns the clean
value or raises Django's ``ValidationError`` keyed by the field, which the API
and the sockets turn into their error shapes; nothing is written before these run.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from crm.chat.models import max_body_length

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def clean_text(value: str | None, *, field: str, max_length: int) -> str:
    text = (value or "").strip()
    if len(text) > max_length:
        raise ValidationError(
            {field: f"Must be at most {max_length} characters (it has {len(text)})."},
            code="too_long",
        )
    return text


def clean_http_url(value: str | None, *, field: str, max_length: int = 2048) -> str:
    """Accept only http(s) URLs: a ``javascript:`` URL must never reach an href."""
    url = (value or "").strip()
    if not url:
        return ""
    if len(url) > max_length:
        raise ValidationError({field: f"Must be at most {max_length} characters."}, code="too_long")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. "https://[::1/": urlsplit raises instead of parsing
        scheme = ""
    if scheme not in {"http", "https"} or any(c in url for c in "\r\n\t"):
        raise ValidationError({field: "Must be an http:// or https:// URL."}, code="invalid_url")
    return url


def clean_body(body: str | None) -> str:
    if not isinstance(body, str):
        raise ValidationError({"body": "A message must be text."}, code="invalid")
    text = body.strip()
    if not text:
        raise ValidationError({"body": "A message can't be empty."}, code="empty")
    limit = max_body_length()
    if len(text) > limit:
        raise ValidationError(
            {"body": f"A message can have at most {limit} characters (it has {len(text)})."},
            code="too_long",
        )
    if "\x00" in text:
        raise ValidationError({"body": "A message can't contain NUL characters."}, code="invalid")
    return text


def clean_client_id(client_id: str | None) -> str | None:
    if client_id is None or client_id == "":
        return None
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        raise ValidationError(
            {"client_id": "Must be 1 to 64 letters, digits or . _ : - characters."},
            code="invalid",
        )
    return client_id
