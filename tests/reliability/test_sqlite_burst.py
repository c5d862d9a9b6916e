"""A burst of widget sends on the embedded database: writers queue, none is refused with a 503.

``crm run`` on a fresh SQLite data dir (its job worker included) takes 300 sends at
once over loopback, the way a flooding widget or a crowd of visitors would:

1. from one visitor, with the default abuse limits: the limiter refuses what is over
   its budget (429) and everything else is stored; nothing else may refuse;
2. from several visitors, with the send limit raised: every send is stored.

Each acknowledged message is then in the database exactly once, and every
conversation's seqs run 1..last_seq without a gap.

SQLite has one writer, so the writers of a burst must queue in the process. When
they queued in SQLite's busy handler instead (one thread per request, each polling
for the lock), the thread holding the lock got the CPU only now and then, and the
last waiters gave up after the 20 s busy timeout: "database is locked" at
``BEGIN IMMEDIATE``, answered with 503. The server is held to one CPU here, like a
small box, so that the burst really outnumbers it.

Bounds: each request may take up to REQUEST_TIMEOUT, a burst BURST_TIMEOUT, and
every process started here is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.conftest import free_port
from tests.support.cluster import ROOT, SHOP, wait_port

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the embedded SQLite database only"
)

BURST = 300
VISITORS = 6  # in the second burst, each sending BURST / VISITORS messages
DEFAULT_SEND_LIMIT = 30  # crm.conf: send_message (30, 60) per visitor token
REQUEST_TIMEOUT = 120.0
BURST_TIMEOUT = 300.0
START_TIMEOUT = 120.0  # `crm run` migrates and collects static files first
STOP_TIMEOUT = 30.0


@dataclass
class Visitor:
    token: str
    conversation: str  # external id


@dataclass
class Answer:
    visitor: Visitor
    client_id: str
    status: int
    body: dict
    retry_after: str | None


class Product:
    """``crm run`` (server and job worker) on a private SQLite data dir, over loopback."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
            and not k.startswith(("EMAIL_", "CRM_"))
        }
        self.env.update(CRM_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = data_dir / "server.log"

    def crm(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "crm.cli", *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    def create_widget(self) -> str:
        self.crm("manage", "migrate", "--verbosity", "0")
        out = self.crm("createwidget", "--name", "Burst", "--origin", SHOP)
        match = re.search(r"Public key: (\S+)", out)
        assert match, out
        return match.group(1)

    def start(self, **env: str) -> None:
        self.port = free_port()
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crm.cli", "run", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning"],
                env={**self.env, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if hasattr(os, "sched_setaffinity"):
            # One CPU, before `crm run` starts its threads and its job worker (both inherit it).
            os.sched_setaffinity(self.proc.pid, {max(os.sched_getaffinity(0))})
        wait_port(self.port, self.proc, timeout=START_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM (`crm run` stops its worker), then SIGKILL to the whole process group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker too, if it was left behind
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def rows(self, conversation: str) -> list[tuple[int, str, str | None]]:
        """(seq, sender_type, client_id) of a conversation's messages, read from the file."""
        db = sqlite3.connect(f"file:{self.data_dir / 'crm.sqlite3'}?mode=ro", uri=True)
        try:
            return db.execute(
                "SELECT m.seq, m.sender_type, m.client_id FROM crm_chat_messages m "
                "JOIN crm_chat_conversations c ON c.id = m.conversation_id "
                "WHERE c.external_id = ? ORDER BY m.seq",
                [uuid.UUID(conversation).hex],
            ).fetchall()
        finally:
            db.close()


async def _burst(port: int, key: str, visitors: int, ip: str) -> list[Answer]:
    """Identify ``visitors`` visitors, open a conversation each, then send BURST at once."""
    base = f"http://127.0.0.1:{port}/p/chat/{key}/api"
    # `crm run` trusts X-Forwarded-For from loopback: each burst is its own client address.
    headers = {"Origin": SHOP, "X-Forwarded-For": ip}
    # A connection per request, as from that many browsers.
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    async with httpx.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        people = []
        for _ in range(visitors):
            r = await client.post(f"{base}/visitor", json={})
            assert r.status_code == 201, r.text
            token = r.json()["visitor_token"]
            r = await client.post(
                f"{base}/conversations", json={}, headers={"X-Chat-Visitor-Token": token}
            )
            assert r.status_code == 201, r.text
            people.append(Visitor(token, r.json()["conversation"]["id"]))

        async def send(i: int) -> Answer:
            who = people[i % visitors]
            client_id = f"burst-{i}"
            r = await client.post(
                f"{base}/conversations/{who.conversation}/messages",
                json={"body": f"message {i}", "client_id": client_id},
                headers={"X-Chat-Visitor-Token": who.token},
            )
            try:
                body = r.json()
            except json.JSONDecodeError:
                body = {"raw": r.text[:300]}
            return Answer(who, client_id, r.status_code, body, r.headers.get("Retry-After"))

        return await asyncio.wait_for(
            asyncio.gather(*(send(i) for i in range(BURST))), BURST_TIMEOUT
        )


def _assert_stored_exactly_once(product: Product, answers: list[Answer]) -> None:
    """Acknowledged sends are stored once each, nothing else from the visitor; no seq gaps."""
    by_conversation: dict[str, list[Answer]] = {}
    for a in answers:
        by_conversation.setdefault(a.visitor.conversation, []).append(a)
    for conversation, mine in by_conversation.items():
        rows = product.rows(conversation)
        seqs = [seq for seq, _, _ in rows]
        assert seqs == list(range(1, len(rows) + 1)), f"{conversation}: seqs {seqs}"
        stored = Counter(client_id for _, sender, client_id in rows if sender == "visitor")
        assert all(n == 1 for n in stored.values()), f"stored twice: {stored.most_common(3)}"
        acked = {a.client_id: a.body["message"]["seq"] for a in mine if a.status == 201}
        assert set(stored) == set(acked), (
            f"{conversation}: acknowledged but not stored {sorted(set(acked) - set(stored))[:5]}, "
            f"stored but refused {sorted(set(stored) - set(acked))[:5]}"
        )
        seq_of = {client_id: seq for seq, _, client_id in rows if client_id}
        assert all(seq_of[c] == seq for c, seq in acked.items()), "an ack names another seq"


def _summary(answers: list[Answer], product: Product) -> str:
    statuses = Counter(a.status for a in answers)
    failed = [a for a in answers if a.status not in {201, 429}]
    sample = failed[0].body if failed else None
    return f"statuses {dict(statuses)}, first other answer {sample}\n{product.log_tail()}"


@pytest.mark.usefixtures("quiet_http_log")
def test_a_burst_of_sends_queues_and_only_the_rate_limit_refuses(tmp_path: Path) -> None:
    product = Product(tmp_path / "data")
    product.data_dir.mkdir()
    key = product.create_widget()

    # 1. One visitor floods one conversation with the default limits.
    try:
        product.start()
        answers = asyncio.run(_burst(product.port, key, visitors=1, ip="203.0.113.1"))
    finally:
        product.stop()
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {201, 429}, _summary(answers, product)
    # The fixed window may turn over during the burst: at most two windows' budget.
    assert 1 <= statuses[201] <= 2 * DEFAULT_SEND_LIMIT, _summary(answers, product)
    for a in answers:
        if a.status == 429:
            assert a.body["error"]["code"] == "rate_limited" and int(a.retry_after or 0) > 0
        else:
            assert a.body["duplicate"] is False
    _assert_stored_exactly_once(product, answers)

    # 2. Several visitors at once, with a send limit no burst reaches: all stored.
    limits = json.dumps({"send_message": [100_000, 60]})
    try:
        product.start(CRM_CHAT_RATE_LIMITS=limits)
        started = time.monotonic()
        answers = asyncio.run(_burst(product.port, key, visitors=VISITORS, ip="203.0.113.2"))
        took = time.monotonic() - started
    finally:
        product.stop()
    assert all(a.status == 201 for a in answers), _summary(answers, product)
    assert all(a.body["duplicate"] is False for a in answers)
    _assert_stored_exactly_once(product, answers)
    print(f"\nsqlite burst: {BURST} sends from {VISITORS} visitors stored in {took:.1f} s")
