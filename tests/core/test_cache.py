"""The Redis cache backend: Django's behaviour, one shared client per pool."""

from __future__ import annotations

import contextvars
import threading
import uuid

import pytest
from django.core.cache import caches

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_cache(settings, redis_url: str):  # type: ignore[no-untyped-def]
    settings.CACHES = {
        "default": {
            "BACKEND": "crm.core.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"cache-test-{uuid.uuid4().hex}",
        }
    }
    cache = caches["default"]
    yield cache
    cache.clear()


def test_it_reuses_one_client_for_every_call(redis_cache) -> None:  # type: ignore[no-untyped-def]
    client = redis_cache._cache.get_client(write=True)
    assert redis_cache._cache.get_client(write=True) is client
    assert redis_cache._cache.get_client() is client  # one server: reads go there too


def test_threads_share_it_and_each_reads_its_own_values(redis_cache) -> None:  # type: ignore[no-untyped-def]
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(50):
            redis_cache.set(f"t{n}:{i}", n * 1000 + i)
            if redis_cache.get(f"t{n}:{i}") != n * 1000 + i:
                errors.append(f"thread {n} read another value at {i}")
        redis_cache.incr(f"t{n}:0", 5)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert redis_cache.get_many([f"t{n}:0" for n in range(8)]) == {
        f"t{n}:0": n * 1000 + 5 for n in range(8)
    }


def test_backends_of_every_context_share_one_client_and_connection(redis_cache) -> None:  # type: ignore[no-untyped-def]
    """Django makes a backend per context (a request, a socket's database hop): they
    must not each open a pool and a connection to Redis."""
    seen: list[object] = []
    redis_cache.set("warm", 1)
    pool = redis_cache._cache.get_client(write=True).connection_pool
    connections = len(pool._available_connections) + len(pool._in_use_connections)

    def in_a_fresh_context() -> None:
        backend = caches["default"]
        backend.set("shared", 1)
        seen.append(backend._cache.get_client(write=True))

    for _ in range(5):
        contextvars.Context().run(in_a_fresh_context)
    assert len({id(client) for client in seen}) == 1
    assert seen[0] is redis_cache._cache.get_client(write=True)
    # No connection was opened on the way: the one the warm-up used served them all.
    assert len(pool._available_connections) + len(pool._in_use_connections) == connections
