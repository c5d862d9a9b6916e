"""Who is online, kept in the shared cache so every worker process sees the same.

An agent is online while an inbox page or agent socket refreshes their mark
(grace period ``AGENT_TTL``); a visitor while the widget polls or holds a socket.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from crm.chat.models import ChatWidget

logger = logging.getLogger(__name__)
AGENT_TTL = 90  # seconds an agent stays online after their last sign of life
VISITOR_ONLINE_SECONDS = 60


def _agent_key(agent_id: int) -> str:
    return f"crm-presence:agent:{agent_id}"


# Presence is advisory: when the cache (Redis) is down, agents count as offline and
# nothing else fails, so chats keep flowing.


def mark_agent_online(agent_id: int) -> None:
    try:
        cache.set(_agent_key(agent_id), 1, timeout=AGENT_TTL)
    except Exception:
        logger.warning("presence cache unavailable", exc_info=True)


def online_agent_ids(agent_ids: list[int]) -> set[int]:
    if not agent_ids:
        return set()
    try:
        found = cache.get_many([_agent_key(i) for i in agent_ids])
    except Exception:
        logger.warning("presence cache unavailable", exc_info=True)
        return set()
    return {i for i in agent_ids if _agent_key(i) in found}


def widget_agent_ids(widget: ChatWidget) -> list[int]:
    """Agents who answer this widget: its team's members, or every chat agent.

    Cached briefly: every widget poll and visitor heartbeat asks, membership rarely
    changes.
    """
    key = f"crm-presence:widget-agents:{widget.pk}:{widget.team_id}"
    try:
        ids = cache.get(key)
    except Exception:
        return _widget_agent_ids(widget)
    if ids is None:
        ids = _widget_agent_ids(widget)
        try:
            cache.set(key, ids, timeout=30)
        except Exception:
            logger.warning("presence cache unavailable", exc_info=True)
    return ids


def _widget_agent_ids(widget: ChatWidget) -> list[int]:
    User = get_user_model()
    users = User.objects.filter(is_active=True)
    if widget.team_id:
        users = users.filter(crm_teams=widget.team_id)
    chat_perm = Q(groups__permissions__codename="view_chat") | Q(
        user_permissions__codename="view_chat"
    )
    users = users.filter(chat_perm | Q(is_superuser=True)).distinct()
    return list(users.values_list("pk", flat=True))


def agents_online(widget: ChatWidget) -> int:
    return len(online_agent_ids(widget_agent_ids(widget)))


def visitor_is_online(last_seen_at: datetime | None, *, now: datetime | None = None) -> bool:
    if last_seen_at is None:
        return False
    return ((now or timezone.now()) - last_seen_at).total_seconds() < VISITOR_ONLINE_SECONDS
