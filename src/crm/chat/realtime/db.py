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

A hop keeps its thread's connection between messages (Channels'
``database_sync_to_async`` closed it around every hop: ~0.9 ms per message on
SQLite) and closes it only when it failed, e.g. after a database restart; the
next hop on that thread reconnects.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection, connections

from crm.chat import events
from crm.conf import crm_settings

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def socket_db_threads() -> int:
    """How many threads the sockets' database work runs on in this process."""
    if connection.vendor == "sqlite":
        return 1
    return int(crm_settings.CRM_CHAT_SOCKET_DB_THREADS)


def socket_db_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=socket_db_threads(), thread_name_prefix="crm-chat-db"
            )
        return _executor


def _run_keeping_connection(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return func(*args, **kwargs)
    finally:
        for conn in connections.all(initialized_only=True):
            if conn.errors_occurred or conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()


async def in_db(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` on a socket database thread; send the events it committed from here.

    A plain ``run_in_executor`` with the caller's context, not asgiref's
    ``SyncToAsync``: nothing here needs its thread-sensitivity or its way back into
    the loop, and its bookkeeping cost more per message than the rest of the hop.
    """
    loop = asyncio.get_running_loop()
    with events.collected() as pending:
        context = contextvars.copy_context()
        try:
            return await loop.run_in_executor(
                socket_db_executor(), context.run, _run_keeping_connection, func, args, kwargs
            )
        finally:  # what committed is sent even if the hop failed afterwards
            for groups, event in pending:
                await events.send_now_async(groups, event)
