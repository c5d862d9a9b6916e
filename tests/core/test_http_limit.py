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
    await asyncio.gather(
        *(
            limited({"type": "http", "path": "/p/chat/k/api/x", "n": n}, None, None)
            for n in range(50)
        )
    )
    assert app.most == 3
    assert sorted(app.served) == list(range(50))
    # First come, first served: the order requests entered is the order they ran.
    assert app.served[:3] == [0, 1, 2]


async def test_a_visitor_burst_does_not_hold_up_an_agent_page() -> None:
    gate = asyncio.Event()
    served: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"].startswith("/p/"):
            await gate.wait()  # visitor sends that take a long time
        served.append(scope["path"])

    limited = ConcurrencyLimit(app, limit=4)
    burst = [
        asyncio.ensure_future(limited({"type": "http", "path": f"/p/chat/k/{n}"}, None, None))
        for n in range(40)
    ]
    await asyncio.sleep(0)
    # Every public slot is taken and 36 more wait; the inbox page still goes through.
    await asyncio.wait_for(limited({"type": "http", "path": "/crm/chat/"}, None, None), 10)
    assert served == ["/crm/chat/"]
    gate.set()
    await asyncio.gather(*burst)
    assert len(served) == 41


def test_the_default_fits_the_database(settings, db) -> None:  # type: ignore[no-untyped-def]
    settings.CRM_HTTP_CONCURRENCY = 0
    from django.db import connection

    # SQLite: 4. PostgreSQL's default pool of 16: 8 (16 - 4 socket threads >= 8).
    assert http_concurrency() == (4 if connection.vendor == "sqlite" else 8)
    settings.CRM_HTTP_CONCURRENCY = 12
    assert http_concurrency() == 12
