"""The database hop of the sockets: ORM work off the event loop, on threads of their own.

Sockets do not use asgiref's shared sync thread. Django runs every synchronous
view of the process in that one thread, so a socket's send or access check used
to queue behind whatever HTTP requests were running: under a busy site a
visitor's message reached an agent on another worker seconds later
(bench/PROFILE.md). Socket hops run on their own executor instead:

- PostgreSQL: ``CRM_CHAT_SOCKET_DB_THREADS`` threads, each keeping one pooled
  connection, so one worker writes several conversations at once; the
  conversation's row lock serialises what must be serialised.
- SQLite: one thread, since SQLite has one writer anyway; it queues with the HTTP
  writers of the process in ``crm.core.writes`` instead of SQLite's busy timeout.

On SQLite a hop keeps its thread's connection between messages (opening one
costs ~0.9 ms with its PRAGMAs) and closes it only when it failed; the next hop
reconnects. On PostgreSQL a hop gives its pooled connection back when it ends
(microseconds), so idle socket threads never hold connections that requests or
other processes' needs could use: with a small pool (``CRM_DB_POOL_SIZE``) a
kept connection per thread starved the session lookups of new sockets.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection, connections

from crm.chat import events
from crm.conf import crm_settings

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def socket_db_threads() -> int:
    """How many threads the sockets' database work runs on in this process.

    At most half the connection pool, so requests always find connections too.
    """
    if connection.vendor == "sqlite":
        return 1
    threads = int(crm_settings.CRM_CHAT_SOCKET_DB_THREADS)
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict) and pool.get("max_size"):
        threads = min(threads, max(1, int(pool["max_size"]) // 2))
    return threads


def socket_db_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=socket_db_threads(), thread_name_prefix="crm-chat-db"
            )
        return _executor


def _run_in_thread(
    pending: events.Pending, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        with events.collected(pending):
            return func(*args, **kwargs)
    finally:
        for conn in connections.all(initialized_only=True):
            if conn.errors_occurred or conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()
            elif getattr(conn, "pool", None) is not None:
                conn.close()  # back to the pool


async def in_db(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` on a socket database thread; send the events it committed from here.

    A plain ``run_in_executor``, not asgiref's ``SyncToAsync``: nothing here needs
    its thread-sensitivity or its way back into the loop, and its bookkeeping cost
    more per message than the rest of the hop.

    The function runs in the thread's own context, not a copy of the caller's:
    Django keeps cache backends in context-local storage, so in a fresh copy per
    hop every cache call built a new Redis client, pool and TCP connection (one
    per message, bench/PROFILE.md). Only the event collector is carried over.
    """
    loop = asyncio.get_running_loop()
    pending: events.Pending = []
    try:
        return await loop.run_in_executor(
            socket_db_executor(), _run_in_thread, pending, func, args, kwargs
        )
    finally:  # what committed is sent even if the hop failed afterwards
        for groups, event in pending:
            await events.send_now_async(groups, event)
