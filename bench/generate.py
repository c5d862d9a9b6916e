"""Fast bulk generator of chat data, for benchmarks and demos.

    python -m bench.generate --conversations 100000 --messages 10
    python -m bench.generate --total 10000     # top up to 10,000 conversations

Run it with the product's environment (``DATABASE_URL``, ``CRM_DATA_DIR``, …) after
``crm manage migrate``. Each new conversation gets its own visitor (with one page
view) and ``--messages`` messages. On PostgreSQL rows go in with ``COPY``; elsewhere
with ``executemany``. It writes rows directly instead of going through ChatService
(which would take hours for a million messages), so it keeps every invariant the
service keeps, by construction:

* conversation numbers continue gap-free after the highest one, ``chat_id = "C" + number``;
* message seqs are 1..N per conversation, ``last_seq = N``, and ``last_message_at`` is the
  last message's ``created_at``; closed conversations end with the service's system
  message and have ``closed_at``; conversations with agent replies are assigned
  (an agent's first reply assigns, as in the service);
* ids continue after the highest existing ones and PostgreSQL's identity sequences are
  moved past them, so the product's own inserts keep working afterwards;
* each batch is one transaction holding the same advisory lock the service takes to
  allocate chat numbers, plus table locks, so a live server can't interleave numbers.

Widgets (three, "Generated widget 1..3") are created through ChatService; agents are
the existing chat agents, or one created with ``crm.core.services.create_agent``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

BATCH = 5000  # conversations per transaction

FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farah", "Goran", "Hana", "Ines",
               "Jonas", "Kemal", "Lea", "Mateo", "Nora", "Omar", "Priya", "Quentin", "Rosa",
               "Sven", "Tariq", "Uma", "Vera", "Wei", "Yusuf", "Zoe"]  # fmt: skip
LAST_NAMES = ["Almeida", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hughes",
              "Ivanova", "Jensen", "Kowalski", "Larsen", "Müller", "Nakamura", "Okafor",
              "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber"]  # fmt: skip
VISITOR_LINES = [
    "Hi, I have a question about my order.",
    "Do you ship to Portugal?",
    "The checkout page shows an error when I pay by card.",
    "Can I change the delivery address?",
    "Is the blue one still in stock in size M?",
    "Thanks, that helps a lot!",
    "How long does a refund usually take?",
    "I never received the confirmation email.",
]
AGENT_LINES = [
    "Hello! Happy to help. Could you share your order number?",
    "Yes, we ship to the whole EU within 3 to 5 working days.",
    "I'm sorry about that, let me check what happened.",
    "Done: I've updated the address on your order.",
    "It is, and I've reserved one for you for 24 hours.",
    "You're welcome! Anything else I can do?",
]
PAGES = ["/", "/products", "/products/blue-jacket", "/cart", "/checkout", "/help/shipping"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
COUNTRIES = ["PT", "DE", "FR", "GB", "US", "ES", "NL", "BR", ""]


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django

    django.setup()


def _widgets(count: int) -> list:
    from crm.chat.models import ChatWidget
    from crm.chat.services import chat_service

    found = list(ChatWidget.objects.filter(name__startswith="Generated widget ").order_by("id"))
    for i in range(len(found), count):
        found.append(
            chat_service.create_widget(
                name=f"Generated widget {i + 1}",
                welcome_message="Hi! How can we help?",
                allowed_origins=[f"https://shop{i + 1}.example"],
            )
        )
    return found[:count]


def _agents() -> list:
    import secrets

    from crm.chat import selectors
    from crm.core.services import create_agent

    agents = list(selectors.chat_agents()[:10])
    if not agents:
        agents = [
            create_agent(
                username="generated-agent",
                password=secrets.token_urlsafe(16),
                role="Employee",
                first_name="Gen",
                validate=False,
            )
        ]
    return agents


class _Writer:
    """COPY on PostgreSQL, executemany elsewhere; both in the caller's transaction."""

    def __init__(self, connection) -> None:  # type: ignore[no-untyped-def]
        self.connection = connection
        self.pg = connection.vendor == "postgresql"

    def write(self, model, columns: list[str], rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
        if not rows:
            return
        table = model._meta.db_table
        qn = self.connection.ops.quote_name
        cols = ", ".join(qn(c) for c in columns)
        with self.connection.cursor() as cursor:
            if self.pg:
                with cursor.cursor.copy(f"COPY {qn(table)} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return
            fields = [model._meta.get_field(_field_name(model, c)) for c in columns]
            prepared = [
                tuple(
                    f.get_db_prep_save(v, self.connection) for f, v in zip(fields, row, strict=True)
                )
                for row in rows
            ]
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {qn(table)} ({cols}) VALUES ({marks})", prepared)

    def lock(self, models: list, advisory_key: int) -> None:
        if not self.pg:
            return  # SQLite transactions begin IMMEDIATE (settings): writers already queue
        qn = self.connection.ops.quote_name
        tables = ", ".join(qn(m._meta.db_table) for m in models)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key])
            cursor.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")

    def bump_sequences(self, models: list) -> None:
        if not self.pg:
            return
        with self.connection.cursor() as cursor:
            for model in models:
                table = model._meta.db_table
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {self.connection.ops.quote_name(table)}))",
                    [table],
                )


def _field_name(model, column: str) -> str:  # type: ignore[no-untyped-def]
    for field in model._meta.concrete_fields:
        if field.column == column:
            return field.name
    raise KeyError(column)


def _batch_rows(
    *,
    count: int,
    messages: int,
    ids: dict[str, int],
    number: int,
    widgets: list,
    agents: list,
    now: datetime,
    rng: random.Random,
) -> Iterator[tuple[str, tuple]]:
    """Yield ("visitor"|"page_view"|"conversation"|"message", row) for ``count`` chats."""
    step = timedelta(seconds=40)
    for i in range(count):
        vid, cid, pid = ids["visitor"] + i, ids["conversation"] + i, ids["page_view"] + i
        widget = widgets[i % len(widgets)]
        last_at = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
        created = last_at - step * messages
        roll = rng.random()
        status = "open" if roll < 0.5 else ("pending" if roll < 0.7 else "closed")
        assigned = None if rng.random() < 0.3 else rng.choice(agents)
        named = rng.random() < 0.6
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        name = f"{first} {last}" if named else ""
        email = f"{first.lower()}.{last.lower()}{vid}@example.com" if named else ""
        page = f"https://shop{widgets.index(widget) + 1}.example{rng.choice(PAGES)}"
        token_digest = hashlib.sha256(os.urandom(24)).hexdigest()  # of a token nobody holds
        yield "visitor", (vid, uuid.uuid4(), widget.pk, token_digest, name, email,
                          f"198.51.100.{vid % 250 + 1}", rng.choice(USER_AGENTS),
                          rng.choice(COUNTRIES), page, last_at, None, created)  # fmt: skip
        yield "page_view", (pid, vid, page, "Shop", "", created)
        closed_at = last_at if status == "closed" else None
        number_i = number + i
        yield "conversation", (cid, uuid.uuid4(), f"C{number_i}", number_i, widget.pk, vid, "",
                               status, assigned.pk if assigned else None, last_at, closed_at,
                               None, messages, created, last_at)  # fmt: skip
        # Who writes: visitors and, in assigned chats, their agent in turn; a closed chat
        # ends with the service's system message. The last two visitor lines of open
        # chats are unread, so the inbox shows unread counts.
        for seq in range(1, messages + 1):
            at = last_at - step * (messages - seq)
            if closed_at is not None and seq == messages:
                sender, sender_id = "system", None
                who = agent_name(assigned) if assigned else ""
                body = f"This chat was closed by {who}." if who else "This chat was closed."
            elif assigned is not None and seq % 2 == 0:
                sender, sender_id, body = "user", assigned.pk, rng.choice(AGENT_LINES)
            else:
                sender, sender_id, body = "visitor", vid, rng.choice(VISITOR_LINES)
            unread = status != "closed" and seq > messages - 2
            read_at = None if unread or sender == "system" else at + timedelta(seconds=5)
            client = f"gen-{seq}" if sender == "visitor" else None
            yield "message", (ids["message"] + i * messages + seq - 1, uuid.uuid4(), cid, seq,
                              sender, sender_id, body, client, False, read_at, at)  # fmt: skip


def agent_name(user) -> str:  # type: ignore[no-untyped-def]
    return user.get_full_name() or user.get_username()


def generate(
    *,
    conversations: int,
    messages: int = 10,
    seed: int | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> dict:
    """Add ``conversations`` conversations with ``messages`` messages each; return counts."""
    from django.db import connection, transaction
    from django.db.models import Max

    from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor, ChatVisitorPageView
    from crm.chat.services import FIRST_CHAT_NUMBER, _chat_number_lock_id

    if conversations < 0 or messages < 1:
        raise ValueError("conversations must be >= 0 and messages >= 1")
    rng = random.Random(seed)
    widgets = _widgets(3)
    agents = _agents()
    writer = _Writer(connection)
    models = {
        "visitor": ChatVisitor,
        "page_view": ChatVisitorPageView,
        "conversation": ChatConversation,
        "message": ChatMessage,
    }
    columns = {
        "visitor": ["id", "external_id", "widget_id", "visitor_token", "name", "email",
                    "ip_address", "user_agent", "country_code", "current_url", "last_seen_at",
                    "person_id", "created_at"],
        "page_view": ["id", "visitor_id", "url", "title", "referrer", "viewed_at"],
        "conversation": ["id", "external_id", "chat_id", "number", "widget_id", "visitor_id",
                         "subject", "status", "user_assigned_id", "last_message_at",
                         "closed_at", "lead_id", "last_seq", "created_at", "updated_at"],
        "message": ["id", "external_id", "conversation_id", "seq", "sender_type", "sender_id",
                    "body", "client_id", "is_internal", "read_at", "created_at"],
    }  # fmt: skip
    t0 = time.perf_counter()
    done = 0
    while done < conversations:
        count = min(BATCH, conversations - done)
        with transaction.atomic():
            writer.lock(list(models.values()), _chat_number_lock_id())
            ids = {
                kind: (model.objects.aggregate(m=Max("id"))["m"] or 0) + 1
                for kind, model in models.items()
            }
            top = ChatConversation.objects.aggregate(m=Max("number"))["m"]
            number = FIRST_CHAT_NUMBER if top is None else top + 1
            rows: dict[str, list[tuple]] = {k: [] for k in models}
            for kind, row in _batch_rows(
                count=count,
                messages=messages,
                ids=ids,
                number=number,
                widgets=widgets,
                agents=agents,
                now=_now(),
                rng=rng,
            ):
                rows[kind].append(row)
            for kind in ("visitor", "page_view", "conversation", "message"):
                writer.write(models[kind], columns[kind], rows[kind])
            writer.bump_sequences(list(models.values()))
        done += count
        if done % 50000 == 0 or done == conversations:
            log(
                f"generate: {done}/{conversations} conversations ({time.perf_counter() - t0:.1f} s)"
            )
    if connection.vendor == "postgresql" and conversations:
        # VACUUM as well as ANALYZE: a million fresh rows otherwise leave autovacuum
        # (and the GIN indexes' pending lists) busy for minutes, on the same cores as
        # the timings that follow; a live database has had that maintenance long ago.
        with connection.cursor() as cursor:
            for model in models.values():
                table = connection.ops.quote_name(model._meta.db_table)
                cursor.execute(f"VACUUM (ANALYZE) {table}")
    return {
        "added_conversations": conversations,
        "added_messages": conversations * messages,
        "seconds": round(time.perf_counter() - t0, 2),
        "total_conversations": ChatConversation.objects.count(),
    }


def ensure_total(total: int, *, messages: int = 10, seed: int | None = None) -> dict:
    """Top up to ``total`` conversations (never deletes)."""
    from crm.chat.models import ChatConversation

    have = ChatConversation.objects.count()
    return generate(conversations=max(0, total - have), messages=messages, seed=seed)


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def main() -> None:
    parser = argparse.ArgumentParser(description="Bulk-generate chat conversations.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--conversations", type=int, help="how many conversations to add")
    group.add_argument("--total", type=int, help="add conversations up to this many in all")
    parser.add_argument("--messages", type=int, default=10, help="messages per conversation")
    parser.add_argument("--seed", type=int, default=None)
    opts = parser.parse_args()
    _setup_django()
    if opts.total is not None:
        result = ensure_total(opts.total, messages=opts.messages, seed=opts.seed)
    else:
        result = generate(conversations=opts.conversations, messages=opts.messages, seed=opts.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
