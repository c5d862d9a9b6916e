"""The benchmark's own read-only window into the product database (row counts, last seqs),
and creating/dropping its private PostgreSQL databases.

The bench process never imports Django: it reads with sqlite3 / psycopg directly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import BenchError

MESSAGES = "crm_chat_messages"
CONVERSATIONS = "crm_chat_conversations"
# Databases a CI run may be using right now: never create, drop or touch them.
PROTECTED = {"crm_chat", "test_crm_chat", "postgres", "template0", "template1"}


class Db:
    """Counts and seqs from the product's database, SQLite file or PostgreSQL URL."""

    def __init__(self, *, sqlite_path: Path | None = None, pg_url: str | None = None) -> None:
        self.sqlite_path, self.pg_url = sqlite_path, pg_url
        self._conn = None

    def _connect(self):  # type: ignore[no-untyped-def]
        if self._conn is None:
            if self.pg_url:
                import psycopg

                self._conn = psycopg.connect(self.pg_url, autocommit=True)
            else:
                uri = f"file:{self.sqlite_path}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        return self._conn

    def scalar(self, sql: str, params: tuple = ()) -> int:
        cur = self._connect().execute(sql.replace("?", "%s") if self.pg_url else sql, params)
        return cur.fetchone()[0]

    def count_messages(self) -> int:
        return self.scalar(f"SELECT count(*) FROM {MESSAGES}")

    def count_client_ids(self, prefix: str) -> int:
        """Messages whose client_id starts with ``prefix`` (the load phase tags its runs)."""
        return self.scalar(f"SELECT count(*) FROM {MESSAGES} WHERE client_id LIKE ?",
                           (prefix.replace("%", "").replace("_", "") + "%",))  # fmt: skip

    def last_seqs(self, conversations: list[str]) -> dict[str, int]:
        conn = self._connect()
        out: dict[str, int] = {}
        for i in range(0, len(conversations), 500):
            chunk = conversations[i : i + 500]
            if self.pg_url:
                rows = conn.execute(
                    f"SELECT external_id::text, last_seq FROM {CONVERSATIONS} "
                    "WHERE external_id = ANY(%s::uuid[])",
                    (chunk,),
                ).fetchall()
            else:
                # Django stores UUIDs in SQLite as 32 hex characters without dashes.
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT external_id, last_seq FROM {CONVERSATIONS} "
                    f"WHERE external_id IN ({marks})",
                    [c.replace("-", "") for c in chunk],
                ).fetchall()
            for ext, seq in rows:
                key = str(ext)
                if len(key) == 32:
                    key = f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:]}"
                out[key] = seq
        return out

    def backend_pids(self) -> list[int]:
        """PostgreSQL server processes serving this database (not our own connection)."""
        if not self.pg_url:
            return []
        rows = self._connect().execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [r[0] for r in rows.fetchall()]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def pg_url_for(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def pg_available(server_url: str) -> str | None:
    """None when the server answers; otherwise why not."""
    try:
        import psycopg

        with psycopg.connect(pg_url_for(server_url, "postgres"), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return None


def recreate_database(server_url: str, name: str) -> str:
    """Drop (if left over) and create a private benchmark database; return its URL."""
    _check_name(name)
    import psycopg

    with psycopg.connect(pg_url_for(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url_for(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    _check_name(name)
    import psycopg

    with psycopg.connect(pg_url_for(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_name(name: str) -> None:
    if name in PROTECTED or not name.startswith("crm_bench") or not name.replace("_", "").isalnum():
        raise BenchError(f"refusing to touch database {name!r}: benchmark databases are crm_bench*")
