"""Write transactions that queue in the process instead of on SQLite's busy timeout.

SQLite has one writer. Transactions begin IMMEDIATE (settings), so a second
writer waits in SQLite's busy handler, which polls with growing sleeps (up to
100 ms between tries) and gives up after the timeout: under a burst of sends the
waits pile up into seconds and the last ones fail as "database is locked". Inside
one process a plain lock queues them instead: each writer starts the moment the
previous one commits, in arrival order, and none gives up. PostgreSQL needs no
such queue (row locks serialise only what shares a row), so there this is
``transaction.atomic()`` and nothing more.

Only the outermost write takes the lock: a write inside a transaction already
holds SQLite's writer lock, and taking the process lock there could deadlock
against a thread that holds the process lock and waits for SQLite's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

_sqlite_writer = threading.Lock()


@contextmanager
def write_transaction() -> Iterator[None]:
    """``transaction.atomic()``, queued behind the process's other writers on SQLite."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    with _sqlite_writer, transaction.atomic():
        yield
