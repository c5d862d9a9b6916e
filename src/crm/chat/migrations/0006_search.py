"""Search indexes for the inbox (``crm.chat.search``).

PostgreSQL: a GIN index on ``to_tsvector(<config>, body)`` for message text, and
``pg_trgm`` GIN indexes for visitor names, emails and subjects (``ILIKE '%…%'``
uses them). Every index is an expression over existing columns, so nothing is
backfilled row by row: ``CREATE INDEX CONCURRENTLY`` reads the table once while
sends go on (it takes no lock that blocks writes), which is why this migration is
not atomic. An interrupted build leaves an INVALID index behind; running the
migration again drops and rebuilds it.

SQLite: an external-content FTS5 table over message bodies, kept in step by
triggers on insert, update and delete (purges included), filled once from the
existing rows. The porter tokenizer stems English as PostgreSQL's config does.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from crm.chat.search_index import (
    postgres_index_statements,
    sqlite_drop_statements,
    sqlite_index_statements,
)


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    tables = _tables(apps)
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = postgres_index_statements(**tables)
    elif vendor == "sqlite":
        statements = sqlite_index_statements(**tables)
    else:  # pragma: no cover - the product supports these two
        return
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    tables = _tables(apps)
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            for name in postgres_index_statements(**tables, names_only=True):
                cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        elif vendor == "sqlite":
            for sql in sqlite_drop_statements(messages=tables["messages"]):
                cursor.execute(sql)


def _tables(apps: StateApps) -> dict[str, str]:
    return {
        "messages": apps.get_model("crm_chat", "ChatMessage")._meta.db_table,
        "visitors": apps.get_model("crm_chat", "ChatVisitor")._meta.db_table,
        "conversations": apps.get_model("crm_chat", "ChatConversation")._meta.db_table,
    }


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("crm_chat", "0005_widget_deleted_at"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
