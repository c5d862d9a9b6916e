"""Django's Redis cache, with its Redis client shared by the whole process.

Django builds the client side of its Redis cache twice too often for a chat:

- ``caches["default"]`` is context-local, and every request (asgiref runs a view
  in a copy of the request's context) or socket database hop got a new backend,
  hence a new connection pool and a new TCP connection to Redis: a connect, its
  handshake commands and redis-py's package metadata read, per request.
- ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` around the pool for
  every cache operation: about 150 µs of CPU with redis-py 8, as much as the
  command itself, several times per chat message (rate limit, presence).

Here every backend instance with the same servers and options uses one client
object, with its pools and one ``redis.Redis`` per pool. Both are safe to share
between threads (each command takes its own connection from the pool). The key
prefix, versions and everything else stay per backend, as in Django.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from django.core.cache.backends import redis as django_redis
from django.utils.functional import cached_property

_shared: dict[tuple[tuple[str, ...], str], RedisCacheClient] = {}
_shared_lock = threading.Lock()


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
        # What Django's client is built from (its own ``_servers`` and ``_options``).
        self._location = re.split("[;,]", server) if isinstance(server, str) else list(server)
        self._client_options: dict[str, Any] = params.get("OPTIONS", {})

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._location), repr(sorted(self._client_options.items())))
        with _shared_lock:
            client = _shared.get(key)
            if client is None:
                client = RedisCacheClient(self._location, **self._client_options)
                _shared[key] = client
            return client
