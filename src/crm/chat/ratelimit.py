"""Fixed-window abuse limits on the shared cache (local memory, or Redis when configured).

``add`` + ``incr`` are atomic in both backends, so concurrent requests can't slip
past a limit the way a read-modify-write counter would let them. Every visitor
message is checked against two counters (its token and its IP); on Redis both are
counted by one server-side script call (``SET NX EX`` + ``INCR`` per key, on the keys
Django's cache would use): one command and one round trip, where a pipeline of four
commands cost the client four times the packing and parsing per message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis.commands.core import Script

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


# KEYS: the counters; ARGV[1]: their lifetime in seconds. Returns the new counts.
_COUNT_LUA = """
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[1], 'NX')
  counts[i] = redis.call('INCR', key)
end
return counts
"""
_scripts: dict[int, Script] = {}


def _count(keys: list[str], window: int) -> list[int]:
    """Count one hit on each key of this window; return the counts."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        client = backend._cache.get_client(write=True)
        # EVALSHA, loading the script once per Redis (again after a restart).
        script = _scripts.get(id(client.connection_pool))
        if script is None:
            script = _scripts[id(client.connection_pool)] = client.register_script(_COUNT_LUA)
        full = [backend.make_and_validate_key(key) for key in keys]
        return [int(n) for n in script(keys=full, args=[window + 1], client=client)]
    counts = []
    for key in keys:
        cache.add(key, 0, timeout=window + 1)
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window + 1)
            counts.append(1)
    return counts


def check(action: str, *, ip: str | None, token_key: str | None = None) -> None:
    """Raise ``Limited`` when this token or this IP has done ``action`` too often."""
    limit, window = crm_settings.CRM_CHAT_RATE_LIMITS[action]
    now = int(time.time())
    bucket = now // window
    limits: dict[str, int] = {}
    if token_key:
        limits[f"crm-rl:{action}:t:{token_key}:{bucket}"] = limit
    if ip:
        limits[f"crm-rl:{action}:ip:{ip}:{bucket}"] = limit * IP_FACTOR
    if not limits:
        return
    try:
        counts = _count(list(limits), window)
    except Exception:
        # The cache (Redis) is down: chat keeps working unthrottled rather than
        # refusing every visitor; body caps and validation still apply.
        logger.warning("rate limit cache unavailable; not limiting %s", action, exc_info=True)
        return
    if any(count > cap for count, cap in zip(counts, limits.values(), strict=True)):
        raise Limited(action, max(1, (bucket + 1) * window - now))
