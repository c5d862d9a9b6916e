"""A widget's settings for the per-message checks, read once per process and interval.

Every visitor message asks "is anyone there to answer?" (the offline auto-reply,
business hours), which needs the widget's settings. Reading its row for every
message put a query on the hot path; settings change rarely, so each process
keeps them for ``TTL`` seconds and forgets a widget at once when it is saved or
deleted in this process (signals). Other processes see a change within ``TTL``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from crm.chat.models import ChatWidget

TTL = 5.0

_cache: dict[int, tuple[float, ChatWidget]] = {}
_lock = threading.Lock()


def widget_settings(widget_id: int) -> ChatWidget:
    """The widget as read at most ``TTL`` seconds ago (deleted ones included)."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(widget_id)
    if cached is not None and now - cached[0] < TTL:
        return cached[1]
    widget = ChatWidget.objects.get(pk=widget_id)
    with _lock:
        _cache[widget_id] = (now, widget)
    return widget


def forget(sender: Any = None, instance: ChatWidget | None = None, **kwargs: Any) -> None:
    """Signal receiver (post_save, post_delete): drop one widget, or all without one."""
    with _lock:
        if instance is None:
            _cache.clear()
        else:
            _cache.pop(instance.pk, None)


def connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    post_save.connect(forget, sender=ChatWidget, dispatch_uid="crm_chat_widget_settings_save")
    post_delete.connect(forget, sender=ChatWidget, dispatch_uid="crm_chat_widget_settings_del")
