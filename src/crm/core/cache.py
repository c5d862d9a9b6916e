"""Django's Redis cache, with one client object per connection pool instead of per call.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` around the
shared pool for every cache operation. With redis-py 8 that construction costs
about 150 µs of CPU, as much as the command itself, and the chat pays it several
times per message (rate limit, presence). A ``redis.Redis`` is safe to share
between threads (each command takes its own connection from the pool), so one per
pool is kept. Everything else is Django's.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    # The pool helpers and ``_client`` are Django's own, left out of django-stubs.
    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = self._clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
