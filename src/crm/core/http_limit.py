"""At most ``CRM_HTTP_CONCURRENCY`` requests of a process run in Django at once.

Django's ASGI handler runs each request's synchronous code in a thread of its
own (asgiref's ``ThreadSensitiveContext``), with no upper bound. Under a burst
that is hundreds of threads at once, each wanting a database connection: the
PostgreSQL pool runs dry and requests fail after its timeout (503), SQLite's
writers pile up behind its lock, and the sockets' threads starve for CPU. The
rest of a burst waits here instead, in the event loop, where waiting costs
nothing and the order is first come, first served.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from crm.conf import crm_settings


def http_concurrency() -> int:
    """The configured limit, or a default that fits the database's connections.

    On PostgreSQL the default is what the pool has left beside the sockets'
    threads (at least 2, at most 8): a request holds a connection while it runs,
    so many more requests at once than connections would only queue inside the
    pool, with its timeout, instead of here; a few more only wait a hop's time.
    """
    from django.db import connection

    configured = crm_settings.CRM_HTTP_CONCURRENCY
    if configured:
        return int(configured)
    if connection.vendor == "sqlite":
        return 4
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if not isinstance(pool, dict) or not pool.get("max_size"):
        return 8
    from crm.chat.realtime.db import socket_db_threads

    return max(2, min(8, int(pool["max_size"]) - socket_db_threads()))


# Requests of the public widget endpoints (visitors, any website) and those of the
# CRM (agents) take their slots from separate lanes, so a burst of visitor sends
# can't make an agent's inbox page wait behind it.
PUBLIC_PREFIX = "/p/"


def lane(path: str) -> str:
    return "public" if path.startswith(PUBLIC_PREFIX) else "crm"


class ConcurrencyLimit:
    """ASGI middleware: per event loop, one semaphore per lane around the wrapped app.

    The public lane gets ``limit`` slots (``CRM_HTTP_CONCURRENCY``), the CRM lane
    half as many (at least 2): agents are few, and their pages must stay quick.
    """

    def __init__(self, app: Any, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self._slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def _semaphore(self, path: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        lanes = self._slots.get(loop)
        if lanes is None:
            public = self.limit or http_concurrency()
            lanes = self._slots[loop] = {
                "public": asyncio.Semaphore(public),
                "crm": asyncio.Semaphore(max(2, public // 2)),
            }
        return lanes[lane(path)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with self._semaphore(scope.get("path", "")):
            await self.app(scope, receive, send)
