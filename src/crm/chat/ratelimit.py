"""Fixed-window abuse limits on the shared cache (local memory, or Redis when configured).

``cache.add`` + ``cache.incr`` are atomic in both backends, so concurrent requests
can't slip past a limit the way a read-modify-write counter would let them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

from crm.conf import crm_settings

IP_FACTOR = 4  # several visitors may share one IP (offices, mobile carriers)
logger = logging.getLogger(__name__)


# Not frozen: code the exception passes through may set its __traceback__ (contextlib's
# context managers do), which a frozen dataclass turns into a FrozenInstanceError.
@dataclass
class Limited(Exception):
    action: str
    retry_after: int

    @property
    def message(self) -> str:
        wait = f"{self.retry_after} second{'s' if self.retry_after != 1 else ''}"
        if self.action == "send_message":
            return f"You're sending messages very quickly. Please wait {wait} and try again."
        return f"Too many requests. Please wait {wait} and try again."


def _hit(key: str, limit: int, window: int) -> int | None:
    """Count one hit; return seconds to wait when over ``limit``, else None."""
    now = int(time.time())
    bucket = now // window
    full_key = f"crm-rl:{key}:{bucket}"
    cache.add(full_key, 0, timeout=window + 1)
    try:
        count = cache.incr(full_key)
    except ValueError:  # expired between add and incr
        cache.add(full_key, 1, timeout=window + 1)
        count = 1
    if count > limit:
        return max(1, (bucket + 1) * window - now)
    return None


def check(action: str, *, ip: str | None, token_key: str | None = None) -> None:
    """Raise ``Limited`` when this token or this IP has done ``action`` too often."""
    limit, window = crm_settings.CRM_CHAT_RATE_LIMITS[action]
    waits = []
    try:
        if token_key:
            waits.append(_hit(f"{action}:t:{token_key}", limit, window))
        if ip:
            waits.append(_hit(f"{action}:ip:{ip}", limit * IP_FACTOR, window))
    except Exception:
        # The cache (Redis) is down: chat keeps working unthrottled rather than
        # refusing every visitor; body caps and validation still apply.
        logger.warning("rate limit cache unavailable; not limiting %s", action, exc_info=True)
        return
    worst = max((w for w in waits if w is not None), default=None)
    if worst is not None:
        raise Limited(action, worst)
