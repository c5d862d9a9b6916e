"""Inbox pages at scale: server time and query count at growing conversation counts.

    python -m bench.inbox --scales 1000,10000,100000 --repeat 9

Run with the product's environment (a migrated PostgreSQL database of its own). For
each scale it tops the data up with ``bench.generate`` (10 messages per conversation),
then renders, in this process through Django's test client, the inbox list
(``/crm/chat/``, default "open" tab), the newest conversation's page, and three
searches (a word nothing has, a word of the newest visitor message, a chat id) as
an Owner agent: the median of ``--repeat`` requests after two warm-ups, and one more request
inside ``CaptureQueriesContext`` for the query count and the slowest query. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import sys
import time
from urllib.parse import urlencode

PAGES = ("list", "conversation", "search_none", "search_word", "search_chat_id")


def _searches(newest) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The three kinds of search the inbox must answer flat: a word no message has, a
    word from the newest visitor message (generated text: a common word), a chat id."""
    from crm.chat.models import ChatMessage

    latest = (
        ChatMessage.objects.filter(conversation=newest, sender_type="visitor")
        .order_by("-seq")
        .values_list("body", flat=True)
        .first()
    ) or "order"
    word = max(re.findall(r"[A-Za-z]{3,}", latest) or ["order"], key=len)
    return {"search_none": "zxqvbnm", "search_word": word, "search_chat_id": newest.chat_id}


def _time_page(client, url: str, repeat: int) -> dict:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    queries = ctx.captured_queries
    slowest = max(queries, key=lambda q: float(q["time"]), default={"time": "0", "sql": ""})
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "queries": len(queries),
        "sql_ms": sum(float(q["time"]) for q in queries) * 1000,
        "slowest_query_ms": float(slowest["time"]) * 1000,
        # The interesting part of a long SELECT is after its column list.
        "slowest_query": _abridge(slowest["sql"]),
        "_slowest_sql": slowest["sql"],
    }


def _explain(sql: str) -> list[str]:
    """PostgreSQL's plan of a captured query (literals inlined by Django), for PROFILE.md."""
    from django.db import connection

    if connection.vendor != "postgresql" or not sql.startswith("SELECT"):
        return []
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return [row[0] for row in cursor.fetchall()][:60]


def _abridge(sql: str) -> str:
    cut = sql.find(" FROM ")
    return (sql[:7] + "..." + sql[cut:] if sql.startswith("SELECT ") and cut > 0 else sql)[:600]


def _validate() -> list[str]:
    """Check the generated data keeps the service's invariants, then write through it."""
    from django.db.models import Count, Max, Min

    from crm.chat.models import ChatConversation, ChatMessage
    from crm.chat.services import chat_service

    problems = []
    agg = ChatConversation.objects.aggregate(lo=Min("number"), hi=Max("number"), n=Count("id"))
    if agg["hi"] - agg["lo"] + 1 != agg["n"]:
        problems.append(f"chat numbers not contiguous: {agg}")
    if ChatConversation.objects.exclude(chat_id__startswith="C").exists():
        problems.append("chat_id not C<number>")
    seqs = ChatMessage.objects.values("conversation_id").annotate(
        n=Count("id"), lo=Min("seq"), hi=Max("seq"), last=Max("created_at")
    )
    convs = dict(ChatConversation.objects.values_list("id", "last_seq"))
    last_at = dict(ChatConversation.objects.values_list("id", "last_message_at"))
    bad = [
        r["conversation_id"]
        for r in seqs
        if r["lo"] != 1
        or r["hi"] != r["n"]
        or convs[r["conversation_id"]] != r["hi"]
        or last_at[r["conversation_id"]] != r["last"]
    ]
    if bad:
        problems.append(f"{len(bad)} conversations with broken seqs/last_seq/last_message_at")
    # The service must carry on from generated rows: next seq, next chat number.
    conv = ChatConversation.objects.filter(status="open").order_by("-id").first()
    assert conv is not None
    before = conv.last_seq
    sent = chat_service.send_visitor_message(conversation=conv, visitor=conv.visitor, body="check")
    if sent.message.seq != before + 1:
        problems.append(f"service appended seq {sent.message.seq} after {before}")
    visitor, _ = chat_service.identify_visitor(widget=conv.widget, token=None)
    opened = chat_service.open_conversation(visitor=visitor)
    if opened.number != agg["hi"] + 1 or opened.chat_id != f"C{agg['hi'] + 1}":
        problems.append(f"service opened {opened.chat_id} after C{agg['hi']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1000,10000,100000")
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=9)
    opts = parser.parse_args()
    scales = sorted(int(s) for s in opts.scales.split(",") if s.strip())

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django

    django.setup()
    from django.test import Client

    from bench.generate import ensure_total
    from crm.chat.models import ChatConversation, ChatMessage
    from crm.core.services import create_agent

    agent = create_agent(
        username=f"inbox-{secrets.token_hex(3)}",
        password=secrets.token_urlsafe(16),
        role="Owner",
        first_name="Inbox",
        validate=False,
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(agent)
    results = []
    for scale in scales:
        generated = ensure_total(scale, messages=opts.messages, seed=scale)
        newest = ChatConversation.objects.filter(status="open").order_by("-last_message_at").first()
        assert newest is not None
        row = {
            "conversations": ChatConversation.objects.count(),
            "messages": ChatMessage.objects.count(),
            "generate_s": generated["seconds"],
            "list": _time_page(client, "/crm/chat/", opts.repeat),
            "conversation": _time_page(client, f"/crm/chat/{newest.external_id}/", opts.repeat),
        }
        for page, q in _searches(newest).items():
            row[page] = _time_page(client, f"/crm/chat/?{urlencode({'q': q})}", opts.repeat)
            row[page]["q"] = q
        print(
            f"inbox: {row['conversations']} conversations: "
            + ", ".join(f"{page} {row[page]['median_ms']:.1f} ms" for page in PAGES),
            file=sys.stderr,
        )
        results.append(row)
    if results:
        top = results[-1]
        for page in PAGES:
            top[page]["slowest_plan"] = _explain(top[page]["_slowest_sql"])
    for row in results:
        for page in PAGES:
            row[page].pop("_slowest_sql", None)
    problems = _validate()
    print(json.dumps({"scales": results, "valid": not problems, "problems": problems}))


if __name__ == "__main__":
    main()
