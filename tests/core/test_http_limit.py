"""A burst of requests runs at most CRM_HTTP_CONCURRENCY at a time; the rest wait their turn."""

from __future__ import annotations

import asyncio
from typing import Any

from crm.core.http_limit import ConcurrencyLimit, http_concurrency


class _App:
    """Records how many requests are inside at once; each takes a little while."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.served: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        await asyncio.sleep(0.01)
        self.served.append(scope["n"])
        self.inside -= 1


async def test_a_burst_waits_for_free_slots_and_every_request_is_served() -> None:
    app = _App()
    limited = ConcurrencyLimit(app, limit=3)
    await asyncio.gather(*(limited({"type": "http", "n": n}, None, None) for n in range(50)))
    assert app.most == 3
    assert sorted(app.served) == list(range(50))
    # First come, first served: the order requests entered is the order they ran.
    assert app.served[:3] == [0, 1, 2]


def test_the_default_fits_the_database(settings, db) -> None:  # type: ignore[no-untyped-def]
    settings.CRM_HTTP_CONCURRENCY = 0
    from django.db import connection

    # SQLite: 4. PostgreSQL's default pool of 16: 8 (16 - 4 socket threads >= 8).
    assert http_concurrency() == (4 if connection.vendor == "sqlite" else 8)
    settings.CRM_HTTP_CONCURRENCY = 12
    assert http_concurrency() == 12
