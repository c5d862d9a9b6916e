"""A no-loss soak: 50 conversations x 200 messages each way, over two workers, under faults.

Two uvicorn workers share PostgreSQL (through a loopback proxy that can cut the
database away) and a private Redis. Each conversation has a visitor (the widget's
socket) and an agent; ten agents each hold one socket with their five
conversations open (like the inbox). A conversation's visitor and agent sit on
different workers, so every message crosses from one worker to the other. While
all of them write (each side at most a few messages ahead of the other, as in a
chat), three faults happen one after the other, each for a bounded time:

1. one worker is SIGKILLed under load; its clients move to the survivor, and back
   to a replacement once it is up, resending what was never acknowledged with the
   same client_id;
2. the Redis server is stopped for a few seconds and started again;
3. PostgreSQL becomes unreachable for a few seconds: the product must answer 503
   with Retry-After (JSON on the public API, a page for agents) and recover by
   itself once the database is back, with no worker restart.

At the end every message is stored exactly once (contiguous seqs, one row per
client_id) and held exactly once by both parties of its conversation.

The clients (``tests/support/cluster.py``) behave like the widget and the inbox:
dedupe by seq, resume from the last seq held, fall back to HTTP while the socket
is down, retry with the same client_id. Every loop below is bounded by a count or
a deadline, and every process is stopped in ``finally``.

How long it takes is the product's throughput, not pacing: clients send as fast
as they are acknowledged (a few messages in flight each). On a 2-core machine the
two workers acknowledge about 80-120 messages a second through the proxy, so the
20,000 messages take 3 to 4 minutes; ``CRM_SOAK_MESSAGES`` shrinks the run.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from django.db import connection

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from crm.chat.services import chat_service
from crm.core.services import create_agent
from tests.chat.conftest import ChatWorld, make_world
from tests.support.cluster import (
    SHOP,
    Cluster,
    Desk,
    Peer,
    RedisServer,
    agent_cookie,
    heartbeat,
    send,
    settle,
    visitor_peer,
)
from tests.support.dbproxy import DbProxy

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# Smaller values (e.g. CRM_SOAK_CONVERSATIONS=4) are for trying changes locally.
CONVERSATIONS = int(os.environ.get("CRM_SOAK_CONVERSATIONS", "50"))
MESSAGES = int(os.environ.get("CRM_SOAK_MESSAGES", "200"))  # per direction and conversation
# Agents answering them, each with one socket that has its conversations open (the
# inbox): conversation c is agent c % AGENTS's.
AGENTS = min(10, CONVERSATIONS)
WINDOW = 3  # unacknowledged sends a client lets pile up before it waits
LEAD = 6  # how far one side of a conversation may run ahead of the other (a chat)
PACE = 0.2  # seconds between two steps of one client
PING_EVERY = 5.0  # heartbeat (the real clients use 25 s; a soak wants faster syncs)
KILL_GAP = 1.0  # seconds the survivor carries every client alone
REDIS_DOWN = 3.0
DB_DOWN = 4.0  # at least; the proxy stays cut until the outage probes are done
RUN_DEADLINE = 300.0  # the whole exchange, faults included (a safety net, see above)
RECOVERY_DEADLINE = 45.0  # per fault: every client writing again


@pytest.fixture
def tworld(transactional_db: None) -> ChatWorld:
    return make_world()


@dataclass
class Party:
    """One side of one conversation, and where it prefers to be connected."""

    peer: Peer
    conv: ChatConversation
    agent: bool
    slot: int  # index of the worker this client prefers (the load balancer's choice)
    prefix: str  # client_ids are prefix + message index
    sent: int = 0  # messages handed to the transport so far (the next index)
    partner: Party | None = None  # the other side of the conversation
    failures: int = 0  # connection attempts in a row that did not hold
    opened_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.sent >= MESSAGES and not self.peer.unacked


@dataclass
class Fault:
    name: str
    started: float
    ended: float = 0.0
    recovered: float = 0.0
    notes: dict = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f", {note}" for note in self.notes.get("summary", []))
        return (
            f"{self.name} (down {self.ended - self.started:.1f} s{extra}, "
            f"all clients writing again {self.recovered - self.ended:.1f} s later)"
        )


class Soak:
    def __init__(
        self, world: ChatWorld, cluster: Cluster, redis: RedisServer, proxy: DbProxy
    ) -> None:
        self.world, self.cluster, self.redis, self.proxy = world, cluster, redis, proxy
        self.slots: list[int] = []
        self.parties: list[Party] = []
        self.faults: list[Fault] = []
        self.outage: dict = {}
        self.deadline = 0.0
        self.cookie = ""
        self.desks: list[Desk] = []
        self.vacuums = 0

    # -------------------------------------------------------------------- setup

    def prepare(self) -> None:
        """Agents, visitors, conversations assigned to their agent, one party per side."""
        world = self.world
        agents = [world.owner] + [
            create_agent(username=f"agent{i}", password="x", role="Manager", validate=False)
            for i in range(1, AGENTS)
        ]
        self.cookie = agent_cookie(world.owner)
        self.desks = [Desk(agent_cookie(agent)) for agent in agents]
        tokens = [world.token]
        visitors = [world.visitor]
        for i in range(CONVERSATIONS - 1):
            visitor, token = chat_service.identify_visitor(
                widget=world.widget, token=None, ip_address=f"10.0.{i // 250}.{i % 250 + 1}"
            )
            visitors.append(visitor)
            tokens.append(token)
        for c, (visitor, token) in enumerate(zip(visitors, tokens, strict=True)):
            d = c % AGENTS
            conv = world.conversation(visitor)
            world.service.assign_conversation(conversation=conv, agent=agents[d], by=agents[d])
            conv.refresh_from_db()
            v = visitor_peer(world, conv, 0, token=token)
            a = self.desks[d].follow(conv, 0)
            # Visitor and agent of a conversation sit on different workers.
            vp = Party(v, conv, agent=False, slot=(d + 1) % 2, prefix=f"v{c}.")
            ap = Party(a, conv, agent=True, slot=d % 2, prefix=f"a{c}.", partner=vp)
            vp.partner = ap
            self.parties += [vp, ap]

    def port_for(self, party: Party) -> int:
        """The preferred worker if it is alive, else a live one (like a load balancer)."""
        live = self.cluster.live_ports
        home = self.slots[party.slot]
        if home in live or not live:
            return home
        return live[party.slot % len(live)]

    @property
    def progress(self) -> float:
        return sum(p.sent for p in self.parties) / (len(self.parties) * MESSAGES)

    # ------------------------------------------------------------------ clients

    async def connect(self, party: Party) -> None:
        """(Re)connect like the widget: wait a moment (longer after each failure), open
        the socket again and resend what it never acknowledged; while the socket can't
        open, HTTP carries the chat (the same sends, same client_ids, and a poll)."""
        peer = party.peer
        if not peer.closed and peer.desk is None:  # moving: leave this worker politely
            with suppress(websockets.ConnectionClosed):
                await peer.ws.close()  # (a desk does this itself, once for all)
        delay = min(0.5 * 2**party.failures, 4.0)
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        party.failures += 1
        peer.port = self.port_for(party)
        try:
            await peer.open(peer.port)
        except (OSError, TimeoutError, websockets.WebSocketException):
            await peer.fall_back_to_http()
            return
        party.opened_at = time.monotonic()
        if peer.desk is None:  # (a desk resends for all its conversations itself)
            # Sent over a socket that died before its ack: send again, same client_id.
            for client_id, body in list(peer.unacked.items()):
                await send(peer, party.conv, client_id, body, agent=party.agent)

    async def drive(self, party: Party) -> None:
        """Write MESSAGES messages at a steady pace, surviving whatever happens.

        Like the real clients, nothing is resent on a socket that stays up (it either
        delivers or closes): a send that is never acknowledged fails the soak.
        """
        peer = party.peer
        next_ping = time.monotonic() + random.uniform(0, PING_EVERY)
        while time.monotonic() < self.deadline:
            now = time.monotonic()
            if peer.closed or peer.port != self.port_for(party):
                await self.connect(party)
                continue
            if party.failures and now - party.opened_at > 2:
                party.failures = 0  # this connection held
            if party.done:
                return
            assert party.partner is not None
            if (
                party.sent < MESSAGES
                and len(peer.unacked) < WINDOW
                and party.sent - party.partner.sent < LEAD
            ):
                i = party.sent
                party.sent += 1
                body = f"{'agent' if party.agent else 'visitor'} {party.prefix}{i}"
                await send(peer, party.conv, f"{party.prefix}{i}", body, agent=party.agent)
            if now >= next_ping:
                next_ping = now + PING_EVERY
                # One ping per socket: a desk's pong reports all its conversations. A
                # seq the previous pong reported and that is still missing was lost
                # on the way (e.g. in a Redis restart): heartbeat() asks for a sync.
                ping = peer.desk is None or next(iter(peer.desk.peers.values())) is peer
                with suppress(websockets.ConnectionClosed):
                    await heartbeat(peer, party.conv, agent=party.agent, ping=ping)
            await asyncio.sleep(PACE)
        raise AssertionError(
            f"{party.prefix} sent {party.sent}/{MESSAGES}, {len(peer.unacked)} unacked "
            f"when the soak's deadline passed"
        )

    # ------------------------------------------------------------------- faults

    async def until(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = min(time.monotonic() + timeout, self.deadline)
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    def resent(self) -> int:
        return sum(p.peer.resent for p in self.parties)

    async def recovered(self, fault: Fault) -> None:
        """Every client is connected again and has had a send acknowledged since."""
        marks = {id(p): len(p.peer.acked) for p in self.parties}

        def is_writing(p: Party) -> bool:
            if p.done:
                return True
            if p.peer.closed:
                return False
            waiting = not p.peer.unacked and p.sent - p.partner.sent >= LEAD  # type: ignore[union-attr]
            return len(p.peer.acked) > marks[id(p)] or waiting

        def writing() -> bool:
            return all(is_writing(p) for p in self.parties)

        try:
            await self.until(f"recovery from {fault.name}", writing, RECOVERY_DEADLINE)
        except AssertionError as exc:
            stuck = [p for p in self.parties if not is_writing(p)]
            raise AssertionError(
                f"{exc}; not writing: " + ", ".join([await self.describe(p) for p in stuck[:5]])
            ) from None
        fault.recovered = time.monotonic()
        retried = self.resent() - fault.notes.pop("resent_before", 0)
        fault.notes.setdefault("summary", []).append(f"{retried} sends retried")

    async def describe(self, party: Party) -> str:
        """A stuck client, and whether the database has what it waits for."""
        peer = party.peer
        unacked = sorted(peer.unacked)
        stored = await asyncio.to_thread(
            lambda: sorted(
                ChatMessage.objects.filter(
                    conversation=party.conv, client_id__in=unacked
                ).values_list("client_id", "seq")
            )
        )
        pumps = [("running" if not t.done() else repr(t.exception())) for t in peer.pumps[-2:]]
        return (
            f"{party.prefix} (port {peer.port}, closed {peer.closed}, sent {party.sent}, "
            f"unacked {unacked}, stored of those {stored}, errors {dict(peer.errors)}, "
            f"cursor {peer.cursor}, server seq {peer.server_seq}, pumps {pumps})"
        )

    async def run_faults(self) -> None:
        await self.until("load to build up", lambda: self.progress >= 0.15, RUN_DEADLINE)

        # 1. A worker dies under load; a replacement takes its place.
        fault = Fault(
            "worker SIGKILL + replacement", time.monotonic(), notes={"resent_before": self.resent()}
        )
        self.faults.append(fault)
        victim = self.slots[0]
        await asyncio.to_thread(self.cluster.kill, victim)
        await asyncio.sleep(KILL_GAP)
        self.slots[0] = await asyncio.to_thread(self.cluster.start)
        fault.ended = time.monotonic()
        await self.recovered(fault)

        await self.until("more load", lambda: self.progress >= 0.4, RUN_DEADLINE)

        # 2. Redis restarts: live events are lost while it is away.
        fault = Fault("Redis restart", time.monotonic(), notes={"resent_before": self.resent()})
        self.faults.append(fault)
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(REDIS_DOWN)
        await asyncio.to_thread(self.redis.start)
        fault.ended = time.monotonic()
        await self.recovered(fault)

        await self.until("more load", lambda: self.progress >= 0.65, RUN_DEADLINE)

        # 3. PostgreSQL is unreachable: 503s with Retry-After, then recovery by itself.
        fault = Fault(
            "PostgreSQL unreachable", time.monotonic(), notes={"resent_before": self.resent()}
        )
        self.faults.append(fault)
        pids = self.cluster.pids()
        cut = await asyncio.to_thread(self.proxy.cut)
        fault.notes["summary"] = [f"{cut['dropped']} database connections dropped"]
        try:
            probes = asyncio.gather(*(self.probe_down(port) for port in self.slots))
            await asyncio.sleep(DB_DOWN)
            self.outage["down"] = await asyncio.wait_for(probes, 30)
        finally:
            await asyncio.to_thread(self.proxy.resume)
        fault.ended = time.monotonic()
        self.outage["up"] = await asyncio.gather(*(self.probe_up(port) for port in self.slots))
        self.outage["same_workers"] = self.cluster.pids() == pids
        await self.recovered(fault)

    def _probe_targets(self, port: int) -> tuple[tuple[str, dict], tuple[str, dict]]:
        party = self.parties[0]
        api = (
            f"http://127.0.0.1:{port}/p/chat/{self.world.widget.public_key}/api/"
            f"conversations/{party.conv.external_id}/messages"
        )
        page = f"http://127.0.0.1:{port}/crm/chat/"
        return (
            (api, {"X-Chat-Visitor-Token": self.world.token, "Origin": SHOP}),
            (page, {"Cookie": self.cookie}),
        )

    async def probe_down(self, port: int) -> dict:
        """What a widget and an agent get while the database is away."""
        (api, api_headers), (page, page_headers) = self._probe_targets(port)

        async def timed(client: httpx.AsyncClient, url: str, headers: dict) -> tuple:
            t0 = time.monotonic()
            response = await client.get(url, headers=headers)
            return response, time.monotonic() - t0

        async with httpx.AsyncClient(timeout=25) as client:
            (r_api, api_s), (r_page, page_s) = await asyncio.gather(
                timed(client, api, api_headers), timed(client, page, page_headers)
            )
        return {"port": port, "api": r_api, "api_s": api_s, "page": r_page, "page_s": page_s}

    async def probe_up(self, port: int) -> float:
        """Seconds until both the API and an agent page answer 200 again (bounded)."""
        (api, api_headers), (page, page_headers) = self._probe_targets(port)
        t0 = time.monotonic()
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(300):
                try:
                    ok_api = (await client.get(api, headers=api_headers)).status_code == 200
                    ok_page = (await client.get(page, headers=page_headers)).status_code == 200
                except httpx.HTTPError:
                    ok_api = ok_page = False
                if ok_api and ok_page:
                    return time.monotonic() - t0
                if time.monotonic() - t0 > RECOVERY_DEADLINE:
                    break
                await asyncio.sleep(0.2)
        raise AssertionError(f"worker {port} did not recover from the database outage")

    async def monitor(self) -> None:
        """A progress line now and then, so a slow or stuck run is visible in the log."""
        t0, before = time.monotonic(), 0
        while time.monotonic() < self.deadline:
            await asyncio.sleep(15)
            acked = sum(len(p.peer.acked) for p in self.parties)
            closed = sum(p.peer.closed for p in self.parties)
            print(
                f"soak: {time.monotonic() - t0:.0f} s, sent {self.progress:.0%}, acknowledged "
                f"{acked} ({(acked - before) / 15:.0f}/s), clients disconnected {closed}, "
                f"faults {len(self.faults)}",
                flush=True,
            )
            before = acked

    async def vacuum(self) -> None:
        """Stand in for autovacuum when the server runs without it.

        Every message updates its conversation's row (last seq, last message time,
        which the inbox index holds, so no update is HOT): 20,000 dead row versions
        on 50 rows slow every lookup of a conversation down unless vacuum clears
        them, as autovacuum does on a normally configured server.
        """
        tables = [ChatConversation._meta.db_table, ChatVisitor._meta.db_table]

        def run(sql: str) -> object:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    return cursor.fetchone() if cursor.description else None
            finally:
                connection.close()

        if (await asyncio.to_thread(run, "SHOW autovacuum")) == ("on",):
            return
        while time.monotonic() < self.deadline:
            await asyncio.sleep(5)
            await asyncio.to_thread(run, f"VACUUM {', '.join(tables)}")
            self.vacuums += 1

    # ---------------------------------------------------------------------- run

    async def run(self) -> None:
        self.deadline = time.monotonic() + RUN_DEADLINE
        for party in self.parties:
            party.peer.port = self.port_for(party)
            await party.peer.open()
            party.opened_at = time.monotonic()
        drivers = [asyncio.create_task(self.drive(p)) for p in self.parties]
        faults = asyncio.create_task(self.run_faults())
        monitor = asyncio.create_task(self.monitor())
        vacuum = asyncio.create_task(self.vacuum())
        try:
            await asyncio.gather(faults, *drivers)
            convs = {}
            for party in self.parties:
                convs.setdefault(party.conv.pk, []).append(party)
            for party in self.parties:
                if party.peer.closed:
                    party.peer.port = self.port_for(party)
            left = max(5.0, self.deadline - time.monotonic())
            await asyncio.gather(
                *(
                    settle([p.peer for p in pair], pair[0].conv.last_seq + 2 * MESSAGES,
                           pair[0].conv, agent_flags=[p.agent for p in pair], timeout=left)
                    for pair in convs.values()
                )
            )  # fmt: skip
        finally:
            for task in [monitor, vacuum, faults, *drivers]:
                task.cancel()
            await asyncio.gather(monitor, vacuum, faults, *drivers, return_exceptions=True)
            await asyncio.gather(*(p.peer.finish() for p in self.parties), return_exceptions=True)


@pytest.mark.usefixtures("quiet_http_log")
def test_no_message_is_lost_or_duplicated_under_faults(
    tworld: ChatWorld, tmp_path: Path, record_property
) -> None:  # type: ignore[no-untyped-def]
    db = connection.settings_dict
    assert (db["HOST"] or "127.0.0.1") in {"127.0.0.1", "localhost"}, "loopback only"
    started = time.monotonic()
    redis = RedisServer()
    proxy = DbProxy(int(db["PORT"] or 5432))
    cluster = Cluster(redis.url, db_port=proxy.port, log_dir=tmp_path)
    soak = Soak(tworld, cluster, redis, proxy)
    try:
        redis.start()
        proxy.start()
        soak.slots = [cluster.start(), cluster.start()]
        soak.prepare()
        try:
            asyncio.run(soak.run())
        except BaseException:
            print(cluster.tail())
            raise
    finally:
        cluster.stop()
        proxy.stop()
        redis.stop()
    duration = time.monotonic() - started

    # --- while the database was away: clear 503s, then recovery without restarts
    for probe in soak.outage["down"]:
        api, page = probe["api"], probe["page"]
        assert api.status_code == 503, (probe["port"], api.status_code, api.text[:200])
        assert int(api.headers["Retry-After"]) > 0
        assert api.headers["Content-Type"].startswith("application/json")
        error = api.json()["error"]
        assert set(api.json()) == {"error"} and set(error) == {"code", "message"}
        assert error["code"] == "unavailable" and error["message"]
        assert page.status_code == 503, (probe["port"], page.status_code)
        assert int(page.headers["Retry-After"]) > 0
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Back in a moment" in page.text
    assert soak.outage["same_workers"], "a worker was restarted to recover"

    # --- stored exactly once, held exactly once by both parties
    expected_ids: dict[int, set[str]] = {}
    for party in soak.parties:
        ids = {f"{party.prefix}{i}" for i in range(MESSAGES)}
        expected_ids.setdefault(party.conv.pk, set()).update(ids)
    rows = ChatMessage.objects.filter(conversation__in=[p.conv for p in soak.parties]).values_list(
        "conversation_id", "seq", "client_id", "sender_type", "body"
    )
    stored: dict[int, list[tuple]] = {}
    for conv_id, *rest in rows.order_by("conversation_id", "seq"):
        stored.setdefault(conv_id, []).append(tuple(rest))
    lost = duplicated = 0
    for party in soak.parties[::2]:
        conv = party.conv
        expected = conv.last_seq + 2 * MESSAGES
        seqs = [s for s, *_ in stored[conv.pk]]
        assert seqs == list(range(1, expected + 1)), f"{conv.chat_id}: seqs not contiguous"
        client_ids = Counter(c for _, c, _, _ in stored[conv.pk] if c)
        duplicated += sum(n - 1 for n in client_ids.values())
        lost += len(expected_ids[conv.pk] - set(client_ids))
        for _, client_id, sender, body in stored[conv.pk]:
            if client_id:
                assert sender == ("user" if client_id.startswith("a") else "visitor")
                assert body.endswith(client_id)
        assert ChatConversation.objects.get(pk=conv.pk).last_seq == expected
    assert lost == 0 and duplicated == 0, (lost, duplicated)
    for party in soak.parties:
        peer = party.peer
        expected = party.conv.last_seq + 2 * MESSAGES
        assert sorted(peer.seen) == list(range(1, expected + 1)), f"{party.prefix} holes"
        assert peer.acked == {f"{party.prefix}{i}" for i in range(MESSAGES)}
        assert not peer.errors, (party.prefix, peer.errors)

    # --- the figures
    peers = [p.peer for p in soak.parties]
    messages = len(soak.parties) * MESSAGES
    figures = {
        "messages": messages,
        "lost": lost,
        "duplicated": duplicated,
        "dropped_duplicate_frames": sum(p.duplicate_frames for p in peers),
        "resent_same_client_id": sum(p.resent for p in peers),
        "reconnects": sum(p.reconnects for p in peers) + sum(d.reconnects for d in soak.desks),
        "http_fallback": dict(sum((p.statuses for p in peers), Counter())),
        "faults": len(soak.faults),
        "duration_s": round(duration, 1),
    }
    for name, value in figures.items():
        record_property(name, value)
    down = soak.outage["down"]
    print(
        f"\nsoak: messages={messages} ({CONVERSATIONS} conversations x {MESSAGES} each way), "
        f"lost={lost}, duplicated={duplicated}, "
        f"duplicate frames dropped by clients={figures['dropped_duplicate_frames']}, "
        f"resent with the same client_id={figures['resent_same_client_id']}, "
        f"reconnects={figures['reconnects']}, http fallback={figures['http_fallback']}, "
        f"faults={len(soak.faults)}: " + "; ".join(f.line() for f in soak.faults) + ", "
        f"503 after {max(p['api_s'] for p in down):.1f} s (API) / "
        f"{max(p['page_s'] for p in down):.1f} s (page), "
        f"recovered {max(soak.outage['up']):.1f} s after the database came back, "
        f"duration={duration:.0f} s"
    )
