"""Widgets: create, change, new key, soft delete, restore and purge.

Rules that live here: a widget save writes only the fields it was given, so an
instance read before a new key or a delete can't write the old key or
``deleted_at`` back (that would revive a revoked key or widget); a deleted
widget must be restored before it can change; only a deleted widget can be
purged, so destroying chats always takes two deliberate steps. Every change
that may narrow who can use a widget calls ``revocation.widget_changed`` inside
the transaction, so open sockets look again once it commits.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.chat import revocation, selectors
from crm.chat.models import (
    ChatConversation,
    ChatMessage,
    ChatVisitor,
    ChatWidget,
    new_public_key,
    normalise_origin,
)
from crm.chat.services.errors import NotAllowed
from crm.core.writes import write_transaction

WIDGET_FIELDS = (
    "name", "welcome_message", "color", "position", "allowed_origins", "is_active", "team",
    "offline_message", "business_hours", "time_zone", "missed_chat_minutes",
)  # fmt: skip


def create_widget(*, name: str, **fields: object) -> ChatWidget:
    """Create a widget; ``fields`` are any of ``WIDGET_FIELDS``."""
    widget = ChatWidget(name=name)
    return update_widget(widget=widget, **fields)


def update_widget(*, widget: ChatWidget, **fields: object) -> ChatWidget:
    """Create (no pk yet) or change a widget; a deleted widget must be restored first.

    An existing widget saves only the fields given: an instance read before a
    new key was issued or before the widget was deleted must not write the old
    key or ``deleted_at`` back (that would revive a revoked key or widget).
    """
    unknown = set(fields) - set(WIDGET_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown widget fields: {', '.join(sorted(unknown))}.")
    if widget.pk is not None:
        _refuse_if_deleted(widget)
    for field, value in fields.items():
        setattr(widget, field, value)
    if isinstance(widget.allowed_origins, str):
        widget.allowed_origins = origins_from_text(widget.allowed_origins)
    widget.full_clean()
    with write_transaction():
        if widget.pk is None:
            widget.save()
        else:
            widget.save(update_fields=[*fields, "updated_at"])
            # Deactivation, a team or origins change: any save may narrow who
            # may use the widget, so its open sockets look again.
            revocation.widget_changed(widget.pk, reason="widget changed")
    return widget


def regenerate_public_key(*, widget: ChatWidget) -> ChatWidget:
    """Issue a new public key; embed snippets with the old one stop working at once."""
    key = new_public_key()
    with write_transaction():
        # The deleted_at filter makes check and write one statement: a widget
        # deleted meanwhile keeps its key (restoring it must not need a new snippet).
        if not ChatWidget.objects.filter(pk=widget.pk, deleted_at__isnull=True).update(
            public_key=key
        ):
            raise NotAllowed(f"{widget.name} is deleted; restore it first.")
        revocation.widget_changed(widget.pk, reason="widget key changed")
    widget.public_key = key
    return widget


def delete_widget(*, widget: ChatWidget) -> ChatWidget:
    """Soft-delete: the widget stops serving everywhere at once; nothing is lost.

    Visitors, conversations and messages stay (the inbox shows the chats, marked
    as from a deleted widget) until ``restore_widget`` or ``purge_widget``.
    """
    now = timezone.now()
    with write_transaction():
        if not ChatWidget.objects.filter(pk=widget.pk, deleted_at__isnull=True).update(
            deleted_at=now, updated_at=now
        ):
            raise NotAllowed(f"{widget.name} is already deleted.")
        # Visitor sockets of this widget close; agents' sockets look again.
        revocation.widget_changed(widget.pk, reason="widget deleted")
    widget.deleted_at = now
    return widget


def restore_widget(*, widget: ChatWidget) -> ChatWidget:
    """Undo ``delete_widget``: the widget serves again with the same key and settings.

    No recheck is sent: restoring only widens access, and sockets are opened anew.
    """
    now = timezone.now()
    with write_transaction():
        if not ChatWidget.objects.filter(pk=widget.pk, deleted_at__isnull=False).update(
            deleted_at=None, updated_at=now
        ):
            raise NotAllowed(f"{widget.name} is not deleted.")
    widget.deleted_at = None
    return widget


def purge_widget(*, widget: ChatWidget) -> selectors.WidgetRows:
    """Destroy a soft-deleted widget with its visitors, conversations and messages.

    Only a deleted widget can be purged, so destroying chats always takes two
    deliberate steps. Returns what was destroyed. The row lock keeps a concurrent
    restore from reviving a widget halfway through its cascade.
    """
    with write_transaction():
        locked = ChatWidget.objects.select_for_update().filter(pk=widget.pk).first()
        if locked is None or locked.deleted_at is None:
            raise NotAllowed(f"Only a deleted widget can be purged; {widget.name} is not.")
        _, per_model = locked.delete()
        revocation.widget_changed(widget.pk, reason="widget purged")
    return selectors.WidgetRows(
        visitors=per_model.get(ChatVisitor._meta.label, 0),
        conversations=per_model.get(ChatConversation._meta.label, 0),
        messages=per_model.get(ChatMessage._meta.label, 0),
    )


def origins_from_text(text: str) -> list[str]:
    """Parse one origin per line (settings form, CLI) into normalised exact origins."""
    origins: list[str] = []
    errors: list[str] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:
            origin = normalise_origin(line)
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if origin not in origins:
            origins.append(origin)
    if errors:
        raise ValidationError(errors, code="invalid_origin")
    return origins


def _refuse_if_deleted(widget: ChatWidget) -> None:
    """Read ``deleted_at`` from the database: the caller's instance may be stale.

    No lock needed: a delete that commits in between is harmless, because the
    save writes only the fields it was given, never ``deleted_at``.
    """
    rows = list(ChatWidget.objects.filter(pk=widget.pk).values_list("deleted_at", flat=True))
    if not rows:
        raise NotAllowed(f"{widget.name} no longer exists.")
    if rows[0] is not None:
        raise NotAllowed(f"{widget.name} is deleted; restore it first.")
