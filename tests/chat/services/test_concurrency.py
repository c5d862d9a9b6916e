"""Concurrent writers on PostgreSQL: row locks keep seqs, chat ids and idempotency exact."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from tests.chat.conftest import ChatWorld

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 24


def _run_concurrently(n: int, fn: Callable[[int], object]) -> list[object]:
    """Start ``n`` calls at the same instant, each on its own database connection."""
    barrier = threading.Barrier(n, timeout=30)

    def call(i: int) -> object:
        try:
            barrier.wait()
            return fn(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return [f.result(timeout=60) for f in [pool.submit(call, i) for i in range(n)]]


def test_it_gives_concurrent_posts_gapless_unique_seqs(tworld: ChatWorld) -> None:
    conv = tworld.conversation()

    def post(i: int) -> int:
        return tworld.service.send_visitor_message(
            conversation=conv, visitor=tworld.visitor, body=f"m{i}", client_id=f"c{i}"
        ).message.seq

    seqs = _run_concurrently(THREADS, post)
    assert sorted(seqs) == list(range(1, THREADS + 1))
    stored = list(ChatMessage.objects.filter(conversation=conv).values_list("seq", flat=True))
    assert sorted(stored) == list(range(1, THREADS + 1))
    conv.refresh_from_db()
    assert conv.last_seq == THREADS


def test_concurrent_openers_get_distinct_consecutive_chat_ids(tworld: ChatWorld) -> None:
    visitors = [
        tworld.service.identify_visitor(widget=tworld.widget, token=None)[0] for _ in range(THREADS)
    ]
    ids = _run_concurrently(
        THREADS, lambda i: tworld.service.open_conversation(visitor=visitors[i]).chat_id
    )
    assert sorted(ids, key=lambda c: int(c[1:])) == [f"C{1001 + i}" for i in range(THREADS)]


def test_one_visitor_opening_from_many_tabs_gets_one_conversation(tworld: ChatWorld) -> None:
    ids = _run_concurrently(
        THREADS, lambda i: tworld.service.open_conversation(visitor=tworld.visitor).pk
    )
    assert len(set(ids)) == 1
    assert ChatConversation.objects.filter(visitor=tworld.visitor).count() == 1


def test_the_same_client_id_sent_concurrently_makes_one_row(tworld: ChatWorld) -> None:
    conv = tworld.conversation()
    results = _run_concurrently(
        THREADS,
        lambda i: tworld.service.send_visitor_message(
            conversation=conv, visitor=tworld.visitor, body="once", client_id="same"
        ),
    )
    assert len({r.message.pk for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert ChatMessage.objects.filter(conversation=conv).count() == 1
    assert ChatVisitor.objects.count() == 2
