"""The two statements every appended message costs: allocate its seq, insert its row.

Also here, for the paths that must change a conversation before writing to it
(reopen, assign, status actions): its explicit row lock and copying the locked
row's state back onto the caller's instance.

Why SQL here and nowhere else: this is the product's hot path (every message of
every conversation), and the same statements built through the ORM cost about
2.5 ms of Python per message plus three more round trips (bench/PROFILE.md). The
rules stay the models': tables and columns are read from their ``_meta``, values
are adapted by the fields themselves, so the table prefix and both backends need
nothing special here.

- ``allocate_seq``: ``UPDATE … SET last_seq = last_seq + 1 … RETURNING`` takes the
  conversation's row lock (PostgreSQL; on SQLite the transaction holds the writer
  lock from BEGIN IMMEDIATE) and hands back the new seq together with the state
  the caller decides on, in one round trip. Its conditions (``open_only``,
  ``assigned_only``) let a sender skip the separate ``SELECT … FOR UPDATE`` in
  the common case and fall back to it only when there is something to change.
- ``insert_message``: ``INSERT … ON CONFLICT DO NOTHING RETURNING``: a retried
  send whose ``client_id`` is already stored inserts nothing, which the unique
  index detects under any isolation level; the caller then rolls the seq back.
  The statement also answers "had this side written before?" (for the first-
  message email) with a subquery evaluated after the row lock was taken, so on
  PostgreSQL it sees a concurrent send that committed while this one waited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from django.db import connection

from crm.chat.models import ChatConversation, ChatMessage, ChatWidget

if TYPE_CHECKING:
    # What the database adapter takes as a query parameter (django-stubs' own name).
    from django.db.backends.utils import _SQLType


@dataclass(frozen=True, slots=True)
class Allocated:
    """The conversation row as the seq allocation left it."""

    seq: int
    status: str
    user_assigned_id: int | None


@cache
def _allocate_sql(open_only: bool, assigned_only: bool, serving: bool) -> str:
    q = connection.ops.quote_name
    conditions = [f"{q('id')} = %s"]
    if open_only:
        conditions.append(f"{q('status')} <> %s")
    if assigned_only:
        conditions.append(f"{q('user_assigned_id')} IS NOT NULL")
    if serving:
        conditions.append(f"{q('deleted_at')} IS NULL")
        conditions.append(
            f"{q('widget_id')} IN (SELECT {q('id')} FROM {q(ChatWidget._meta.db_table)} "
            f"WHERE {q('public_key')} = %s AND {q('is_active')} AND {q('deleted_at')} IS NULL)"
        )
    return (
        f"UPDATE {q(ChatConversation._meta.db_table)} "
        f"SET {q('last_seq')} = {q('last_seq')} + 1, "
        f"{q('last_message_at')} = %s, {q('updated_at')} = %s "
        f"WHERE {' AND '.join(conditions)} "
        f"RETURNING {q('last_seq')}, {q('status')}, {q('user_assigned_id')}"
    )


@cache
def _insert_sql(with_wrote_before: bool) -> str:
    q = connection.ops.quote_name
    table = q(ChatMessage._meta.db_table)
    columns = (
        "external_id",
        "conversation_id",
        "seq",
        "sender_type",
        "sender_id",
        "body",
        "client_id",
        "is_internal",
        "read_at",
        "created_at",
    )
    returning = q("id")
    if with_wrote_before:
        returning += (
            f", EXISTS (SELECT 1 FROM {table} AS prior "
            f"WHERE prior.{q('conversation_id')} = %s AND prior.{q('sender_type')} = %s "
            f"AND prior.{q('seq')} < %s)"
        )
    return (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({q('conversation_id')}, {q('sender_type')}, {q('sender_id')}, "
        f"{q('client_id')}) WHERE {q('client_id')} IS NOT NULL DO NOTHING "
        f"RETURNING {returning}"
    )


def _datetime(value: datetime) -> _SQLType:
    return ChatMessage._meta.get_field("created_at").get_db_prep_value(value, connection)


def allocate_seq(
    conversation_pk: int,
    now: datetime,
    *,
    open_only: bool = False,
    assigned_only: bool = False,
    widget_key: str | None = None,
) -> Allocated | None:
    """Bump the conversation's ``last_seq`` under its row lock; None if no row matched.

    ``open_only``: only when not closed; ``assigned_only``: only when someone is
    assigned; ``widget_key``: only when the chat isn't deleted and its widget still
    serves under this key (a visitor socket's right to write, read in the same
    statement as the write). A None then means "take the slow path" (reopen,
    assign, or find out which right is gone).
    """
    params: list[_SQLType] = [_datetime(now), _datetime(now), conversation_pk]
    if open_only:
        params.append(ChatConversation.STATUS_CLOSED)
    if widget_key is not None:
        params.append(widget_key)
    with connection.cursor() as cursor:
        cursor.execute(_allocate_sql(open_only, assigned_only, widget_key is not None), params)
        row = cursor.fetchone()
    return None if row is None else Allocated(row[0], row[1], row[2])


def insert_message(
    *,
    conversation_pk: int,
    seq: int,
    sender_type: str,
    sender_id: int | None,
    body: str,
    client_id: str | None,
    internal: bool,
    created_at: datetime,
    external_id: uuid.UUID,
    wrote_before: bool = False,
) -> tuple[int, bool] | None:
    """Insert one message; None when its ``client_id`` was already stored.

    Returns (row id, whether this sender type had written to the conversation
    before); the second is only computed when ``wrote_before`` is asked for.
    """
    params: list[_SQLType] = [
        ChatMessage._meta.get_field("external_id").get_db_prep_value(external_id, connection),
        conversation_pk,
        seq,
        sender_type,
        sender_id,
        body,
        client_id,
        internal,
        None,
        _datetime(created_at),
    ]
    if wrote_before:
        params += [conversation_pk, sender_type, seq]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(wrote_before), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return row[0], bool(row[1]) if wrote_before else False


def lock_conversation(conversation: ChatConversation) -> ChatConversation:
    """Lock the conversation row: it serialises seq allocation and status changes.

    ``of=("self",)``: the widget joined in must not be locked too, or every send
    on one widget would queue behind the others.
    """
    return (
        ChatConversation.objects.select_for_update(of=("self",))
        .select_related("widget")
        .get(pk=conversation.pk)
    )


def sync_conversation(target: ChatConversation, source: ChatConversation) -> None:
    """Copy the locked row's new state onto the caller's instance."""
    for field in ("status", "last_seq", "last_message_at", "closed_at", "user_assigned_id"):
        setattr(target, field, getattr(source, field))
    if source.user_assigned_id is None:
        target.user_assigned = None
    elif "user_assigned" in source._state.fields_cache:
        target.user_assigned = source.user_assigned
