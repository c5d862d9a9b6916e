"""Revocation: a right checked when a socket connected ends when its state changes.

A socket is authorised once, when it connects, but it may stay open for hours.
Whatever that authorisation rested on can change meanwhile: the agent logs out,
is deactivated, loses a permission, a group or a team; a chat is reassigned or
deleted; a widget is deactivated, deleted or gets a new key. Each such change
sends a *recheck* through the hub (so it reaches sockets on every
worker, within about a second) to the sockets it may concern:

- ``user_group(pk)``: every socket of one agent (their rights changed);
- ``session_group(key)``: the sockets opened with one login session (it ended);
- ``widget_group(pk)``: every visitor socket of one widget;
- ``events.INBOX_GROUP``: every agent socket (a group's permissions, a widget's
  team: anyone's view may have narrowed);
- ``events.conversation_group(id)``: both sides of one conversation.

A socket that gets a recheck reads its rights again from the database and
closes (4401 session ended, 4403 permission lost, 4404 widget or conversation
gone) or drops the conversations it may no longer see. The event only says
*look again*, never *you may*: it can't widen access. Sockets also re-check
before every write, when their worker's Redis subscription comes back (what was
published while it was down is lost, rechecks included), and every
``CRM_CHAT_SOCKET_RECHECK_SECONDS`` for changes that bypass the signals below.

Changes made through the ORM's ``save()`` and relation managers are caught by
signals here, wherever they come from (CRM pages, the admin, a shell); writes
that bypass signals (``QuerySet.update``) call ``recheck_on_commit`` themselves.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.http import HttpRequest

from crm.chat import events
from crm.chat.realtime import hub

logger = logging.getLogger(__name__)

# The hub message type "chat.recheck" goes to a socket's ``chat_recheck``.
HUB_MESSAGE_TYPE = "chat.recheck"


def user_group(user_pk: int) -> str:
    return f"crm-chat.user.{user_pk}"


def session_group(session_key: str) -> str:
    """A digest, not the key: group names travel through Redis and its logs."""
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:40]
    return f"crm-chat.session.{digest}"


def widget_group(widget_pk: int) -> str:
    return f"crm-chat.widget.{widget_pk}"


def send_recheck(groups: Iterable[str], *, reason: str, ended: bool = False) -> None:
    """Tell the sockets in ``groups`` to look at their rights again, now.

    ``ended`` says the right is gone whatever the database says (a logout: the
    session row is deleted only after the signal that triggers this).
    """
    # Best effort (a Redis outage is logged by the hub): the periodic re-check still
    # ends the access a few seconds later.
    message = {"type": HUB_MESSAGE_TYPE, "reason": reason, "ended": ended}
    hub.publish_from_thread(list(groups), message)


def recheck_on_commit(groups: Iterable[str], *, reason: str, ended: bool = False) -> None:
    """``send_recheck`` once the change is committed (at once outside a transaction)."""
    targets = list(groups)
    transaction.on_commit(lambda: send_recheck(targets, reason=reason, ended=ended), robust=True)


def widget_changed(widget_pk: int, *, reason: str = "widget changed") -> None:
    """A widget's key, state or team changed: its visitors and every agent look again."""
    recheck_on_commit([widget_group(widget_pk), events.INBOX_GROUP], reason=reason)


def conversation_changed(conversation_external_id: Any, *, reason: str) -> None:
    """A conversation was deleted or moved: both sides of it look again."""
    recheck_on_commit(
        [events.conversation_group(conversation_external_id), events.INBOX_GROUP], reason=reason
    )


def _users_changed(user_pks: Iterable[int], *, reason: str, ended: bool = False) -> None:
    recheck_on_commit([user_group(pk) for pk in user_pks], reason=reason, ended=ended)


# ------------------------------------------------------------------ receivers


def _on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        send_recheck([session_group(key)], reason="logged out", ended=True)


def _on_user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    # Deactivation, a new password (which ends other sessions), a superuser flag:
    # any save of an existing user may narrow what their sockets may do.
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login, nothing narrowed
    if not created:
        _users_changed([instance.pk], reason="agent changed")


def _on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _users_changed([instance.pk], reason="agent deleted", ended=True)


def _on_user_relation_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """``user.groups`` / ``user.user_permissions`` / ``team.members``, either side."""
    if action not in {"post_add", "post_remove", "post_clear", "pre_clear"}:
        return
    User = get_user_model()
    if isinstance(instance, User):
        _users_changed([instance.pk], reason="agent's groups or teams changed")
    elif action == "pre_clear":
        # Clearing from the other side (a group's or team's members): who they were
        # is known only before the clear.
        members = sender.objects.filter(**{_other_side(sender, instance): instance.pk})
        _users_changed(
            members.values_list(_user_column(sender), flat=True), reason="members cleared"
        )
    elif pk_set:
        _users_changed(pk_set, reason="members changed")


def _on_group_permissions_changed(sender: Any, instance: Any, action: str, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"}:
        # A group's (a role's) permissions: every agent socket looks again. Rare, and
        # cheaper than resolving members here.
        recheck_on_commit([events.INBOX_GROUP], reason="role permissions changed")


def _user_column(through: Any) -> str:
    User = get_user_model()
    for field in through._meta.get_fields():
        if getattr(field, "related_model", None) is User:
            return f"{field.name}_id"
    raise LookupError(f"{through} has no user column")


def _other_side(through: Any, instance: Any) -> str:
    for field in through._meta.get_fields():
        if getattr(field, "related_model", None) is type(instance):
            return f"{field.name}_id"
    raise LookupError(f"{through} has no column for {type(instance)}")


def connect_signals() -> None:
    """Called from ``ChatConfig.ready``."""
    from crm.core.models import Team

    User = get_user_model()
    user_logged_out.connect(_on_logout, dispatch_uid="crm_chat_revoke_logout")
    post_save.connect(_on_user_saved, sender=User, dispatch_uid="crm_chat_revoke_user_saved")
    post_delete.connect(_on_user_deleted, sender=User, dispatch_uid="crm_chat_revoke_user_deleted")
    for through in (User.groups.through, User.user_permissions.through, Team.members.through):
        m2m_changed.connect(
            _on_user_relation_changed,
            sender=through,
            dispatch_uid=f"crm_chat_revoke_{through._meta.db_table}",
        )
    m2m_changed.connect(
        _on_group_permissions_changed,
        sender=Group.permissions.through,
        dispatch_uid="crm_chat_revoke_group_permissions",
    )
