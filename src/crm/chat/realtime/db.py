"""The database hop of the sockets: run ORM work off the event loop, keep its connection."""

from __future__ import annotations

from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections

from crm.chat import events


class _SocketDbHop(SyncToAsync):
    """Run a consumer's database work in the shared sync thread, keeping its connection.

    Channels' ``database_sync_to_async`` closes the connection around every hop (with
    ``CONN_MAX_AGE = 0``), so each chat message opened a fresh one: ~0.9 ms on SQLite
    (see bench/PROFILE.md). Consumers' hops all run in asgiref's single shared thread,
    so that thread keeps one connection (a pooled one on PostgreSQL) and closes it
    only when it has failed, e.g. after a database restart; the next hop reconnects.
    """

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.errors_occurred or conn.in_atomic_block:
                    conn.close_if_unusable_or_obsolete()


def database_sync_to_async(func: Any) -> Any:
    """``sync_to_async`` for consumers (thread-sensitive; the connection is kept)."""
    return _SocketDbHop(func, thread_sensitive=True)


async def in_db(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` in the database thread; send the events it committed from here."""
    with events.collected() as pending:
        try:
            return await database_sync_to_async(func)(*args, **kwargs)
        finally:  # what committed is sent even if the hop failed afterwards
            for groups, event in pending:
                await events.send_now_async(groups, event)
