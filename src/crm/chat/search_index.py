"""The search indexes' SQL, shared by migration 0006 and ``crm.chat.search``.

A PostgreSQL expression index is only used by a query that spells the indexed
expression exactly, so both sides take it from here (``BODY_TSVECTOR``).
"""

from __future__ import annotations

# The text search configuration of message bodies: English stemming ("refunds"
# finds "refund"); words of other languages still match as written.
SEARCH_CONFIG = "english"
BODY_TSVECTOR = f"to_tsvector('{SEARCH_CONFIG}'::regconfig, {{column}})"


def body_tsvector(column: str) -> str:
    """The indexed expression over the message body column ``column``."""
    return BODY_TSVECTOR.format(column=column)


def fts_table(messages: str) -> str:
    """SQLite's FTS5 table over the bodies of the ``messages`` table."""
    return f"{messages}_fts"


def postgres_index_statements(
    *, messages: str, visitors: str, conversations: str, names_only: bool = False
) -> list[str]:
    indexes = {
        f"{messages}_body_fts": f'"{messages}" USING gin ({body_tsvector("body")})',
        f"{visitors}_name_trgm": f'"{visitors}" USING gin ({_upper("name")} gin_trgm_ops)',
        f"{visitors}_email_trgm": f'"{visitors}" USING gin ({_upper("email")} gin_trgm_ops)',
        f"{conversations}_subject_trgm": (
            f'"{conversations}" USING gin ({_upper("subject")} gin_trgm_ops)'
        ),
    }
    if names_only:
        return list(indexes)
    statements = ["CREATE EXTENSION IF NOT EXISTS pg_trgm"]
    for name, definition in indexes.items():
        # An interrupted CONCURRENTLY build leaves an invalid index of this name.
        statements.append(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        statements.append(f'CREATE INDEX CONCURRENTLY "{name}" ON {definition}')
    return statements


def _upper(column: str) -> str:
    """Django's ``icontains`` on PostgreSQL is ``UPPER(col::text) LIKE UPPER(%s)``:
    the trigram indexes are on that expression, or the planner can't use them."""
    return f'(UPPER("{column}"::text))'


def sqlite_index_statements(*, messages: str, visitors: str, conversations: str) -> list[str]:
    fts = fts_table(messages)
    return [
        *sqlite_drop_statements(messages=messages),
        f'CREATE VIRTUAL TABLE "{fts}" USING fts5(body, content="{messages}", '
        "content_rowid=\"id\", tokenize='porter unicode61 remove_diacritics 2')",
        f'CREATE TRIGGER "{fts}_ai" AFTER INSERT ON "{messages}" BEGIN '
        f'INSERT INTO "{fts}"(rowid, body) VALUES (new.id, new.body); END',
        f'CREATE TRIGGER "{fts}_ad" AFTER DELETE ON "{messages}" BEGIN '
        f'INSERT INTO "{fts}"("{fts}", rowid, body) VALUES (\'delete\', old.id, old.body); END',
        f'CREATE TRIGGER "{fts}_au" AFTER UPDATE OF body ON "{messages}" BEGIN '
        f'INSERT INTO "{fts}"("{fts}", rowid, body) VALUES (\'delete\', old.id, old.body); '
        f'INSERT INTO "{fts}"(rowid, body) VALUES (new.id, new.body); END',
        f'INSERT INTO "{fts}"("{fts}") VALUES (\'rebuild\')',
    ]


def sqlite_drop_statements(*, messages: str) -> list[str]:
    fts = fts_table(messages)
    return [
        f'DROP TRIGGER IF EXISTS "{fts}_ai"',
        f'DROP TRIGGER IF EXISTS "{fts}_ad"',
        f'DROP TRIGGER IF EXISTS "{fts}_au"',
        f'DROP TABLE IF EXISTS "{fts}"',
    ]
