"""What an open socket may still do, read from the database now.

A socket's rights were checked when it connected; these functions check them
again (on a recheck event, before a write, and periodically — see
``crm.chat.revocation``). They read the current rows, never anything the socket
cached, so a right that ended is seen as ended however the change was made.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from uuid import UUID

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import User
from django.http import HttpRequest

from crm.chat import selectors
from crm.chat.models import ChatConversation
from crm.typing import logged_in

VIEW_CHAT = "crm_chat.view_chat"
REPLY_CHAT = "crm_chat.reply_chat"


def session_agent(session_key: str | None, user_pk: int) -> User | None:
    """The agent this login session still authenticates, or ``None``.

    ``None`` when the session was logged out, expired or deleted, when the agent
    was deactivated or deleted, or when their password changed since the login
    (Django's session hash check). The user is read afresh, so permission checks
    on it see today's groups and permissions, not those cached at connect.
    """
    if not session_key:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = logged_in(auth.get_user(request))
    if user is None or user.pk != user_pk:
        return None
    return user


def visible_among(*, agent: User, external_ids: Iterable[UUID]) -> set[UUID]:
    """Which of these conversations the agent may still open (same rule as the inbox)."""
    ids = list(external_ids)
    if not ids:
        return set()
    return set(
        selectors.visible_conversations(agent=agent, include_deleted=True)
        .filter(external_id__in=ids)
        .values_list("external_id", flat=True)
    )


def visitor_refusal(
    *, widget_pk: int, public_key: str, conversation_pk: int | None
) -> tuple[int, str, str] | None:
    """Why a visitor socket must close now (close code, error code, message), or ``None``.

    The widget must still serve under the key the socket connected with (not
    deactivated, deleted or given a new key), and the conversation must not be
    deleted.
    """
    widget = selectors.widget_by_public_key(public_key=public_key)
    if widget is None or widget.pk != widget_pk:
        return 4404, "unknown_widget", "This chat widget does not exist."
    if (
        conversation_pk is not None
        and not ChatConversation.objects.filter(
            pk=conversation_pk, widget_id=widget_pk, deleted_at__isnull=True
        ).exists()
    ):
        return 4404, "unknown_conversation", "This conversation does not exist."
    return None
