"""Product settings with their defaults, read in one place.

Code reads ``CRM_*`` values through ``crm_settings``; a host project that adds our
apps to its own ``INSTALLED_APPS`` may override any of them in its settings module.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # Prefix of every table the product owns, core and chat (the original's `{prefix}`).
    "CRM_TABLE_PREFIX": "crm_",
    # Enabled optional modules; a missing module hides its nav entry and 404s its URLs.
    "CRM_MODULES": ["chat"],
    # Absolute base URL of this CRM, used in embed snippets and email links.
    "CRM_PUBLIC_URL": "http://127.0.0.1:8000",
    # Longest accepted chat message body, in characters.
    "CRM_CHAT_MAX_BODY": 5000,
    # An open socket reads its rights again at least this often (seconds), besides
    # the revocation events that reach it within about a second of a change.
    "CRM_CHAT_SOCKET_RECHECK_SECONDS": 30.0,
    # Threads per process for the sockets' database work on PostgreSQL, each holding
    # one pooled connection (SQLite always uses one: it has one writer).
    "CRM_CHAT_SOCKET_DB_THREADS": 4,
    # Public widget requests one process runs in Django at once (CRM pages get a lane
    # of half as many); the rest wait their turn in the event loop (0: 4 on SQLite,
    # 8 on PostgreSQL; see crm.core.http_limit).
    "CRM_HTTP_CONCURRENCY": 0,
    # Abuse limits of the public widget API: action -> (requests, window seconds),
    # counted per visitor token and per client IP (IP limits are 4x the token's).
    "CRM_CHAT_RATE_LIMITS": {
        "create_visitor": (20, 600),
        "open_conversation": (10, 600),
        "send_message": (30, 60),
        "page_view": (60, 60),
        "update_visitor": (20, 600),
    },
}

KNOWN_MODULES = {"chat"}
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,20}$")


class CrmSettings:
    """Attribute access to ``CRM_*`` settings, falling back to ``DEFAULTS``."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        return getattr(settings, name, DEFAULTS[name])


crm_settings = CrmSettings()


def table_prefix() -> str:
    prefix = crm_settings.CRM_TABLE_PREFIX
    if not _PREFIX_RE.match(prefix):
        raise ImproperlyConfigured(
            f"CRM_TABLE_PREFIX must be lowercase letters, digits and underscores "
            f"starting with a letter (at most 21 characters), not {prefix!r}."
        )
    return prefix


def table_name(name: str) -> str:
    """The real table name for one of the product's tables, e.g. ``crm_people``."""
    return f"{table_prefix()}{name}"


def module_enabled(module: str) -> bool:
    return module in crm_settings.CRM_MODULES


def public_url() -> str:
    return crm_settings.CRM_PUBLIC_URL.rstrip("/")


# URL path prefixes owned by each optional module; the gate middleware answers 404
# for them while the module is disabled, so disabling needs no URLconf reload.
MODULE_PATH_PREFIXES: dict[str, tuple[str, ...]] = {
    "chat": ("/crm/chat", "/p/chat/"),
}


def module_for_path(path: str) -> str | None:
    for module, prefixes in MODULE_PATH_PREFIXES.items():
        if path.startswith(prefixes):
            return module
    return None
