"""Several real uvicorn processes over PostgreSQL + Redis, with faults.

Each test starts its own worker processes (and, where it restarts Redis, its own
redis-server) on loopback ports; every loop is bounded in count and time. The
Python clients here follow the same protocol as the widget and the inbox: dedupe
by seq, resend unacknowledged messages with the same client_id after a reconnect,
and ask for a sync when a heartbeat reveals a higher seq than they have seen.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from django.conf import settings
from django.db import connection
from django.test import Client

from crm.chat.models import ChatConversation, ChatMessage
from tests.chat.conftest import ChatWorld
from tests.conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]
N = 200


def _wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


class Cluster:
    """Worker processes sharing the test database and one Redis."""

    def __init__(self, redis_url: str) -> None:
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": redis_url,
            "CRM_DATA_DIR": str(settings.DATA_DIR),
            "CRM_PUBLIC_URL": "http://127.0.0.1",
            "CRM_DB_POOL_SIZE": "4",
            "LOG_LEVEL": "WARNING",
            # This is a delivery test, not an abuse test: let one visitor send fast.
            "CRM_CHAT_RATE_LIMITS": json.dumps({"send_message": [100_000, 60]}),
        }
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self) -> int:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "crm.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--ws", "wsproto", "--lifespan", "off", "--log-level", "warning"],
            env=self.env, cwd=ROOT,
        )  # fmt: skip
        self.procs[port] = proc
        _wait_port(port, proc)
        return port

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
        self.procs.clear()


class RedisServer:
    """A private redis-server on a free loopback port, so restarting it disturbs no one."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is needed to restart Redis under test")
        self.binary, self.port, self.proc = binary, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def cluster(redis_url: str) -> Iterator[Cluster]:
    c = Cluster(redis_url)
    yield c
    c.stop()


@dataclass
class Peer:
    """One chat party: keeps every message once, by seq, and its unacknowledged sends."""

    name: str
    seen: dict[int, dict] = field(default_factory=dict)
    raw: list[int] = field(default_factory=list)
    unacked: dict[str, str] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    # Highest seq the server reported in the last heartbeat.
    server_seq: int = 0
    ws: object = None
    port: int = 0
    connector: object = None  # async (peer) -> None: (re)connects to self.port
    http: object = None  # async (peer, method, what, payload) -> dict: the polling fallback
    pumps: list = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, port: int | None = None) -> None:
        """Connect (again) like the real clients do, resuming from the last seq seen."""
        if port is not None:
            self.port = port
        await self.connector(self)  # type: ignore[misc]
        self.pumps.append(asyncio.create_task(_pump(self, self.stop)))

    async def fall_back_to_http(self) -> None:
        """What the widget and the inbox do while their socket is down: send what is
        unacknowledged and poll from the cursor, over plain HTTP."""
        for client_id, body in list(self.unacked.items()):
            message = await self.http(self, "send", {"body": body, "client_id": client_id})  # type: ignore[misc]
            if message is not None:
                self.unacked.pop(client_id, None)
                self.acked.add(client_id)
                self.seen.setdefault(message["seq"], message)
        polled = await self.http(self, "poll", {"since": self.cursor})  # type: ignore[misc]
        if polled is not None:
            messages, last_seq = polled
            for message in messages:
                self.seen.setdefault(message["seq"], message)
                self.cursor = max(self.cursor, message["seq"])
            if len(messages) < 200:
                self.cursor = max(self.cursor, last_seq)

    @property
    def closed(self) -> bool:
        return self.ws is None or self.ws.close_code is not None  # type: ignore[attr-defined]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.pumps)
        with suppress(websockets.ConnectionClosed):
            await self.ws.close()  # type: ignore[attr-defined]

    # Everything up to here is held (in-order message frames and "synced" marks);
    # acks can run ahead of it, so they don't move it. Resuming from it is safe.
    cursor: int = 0

    def take(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "message":
            self.raw.append(frame["seq"])
            self.seen.setdefault(frame["seq"], frame["message"])
            self.cursor = max(self.cursor, frame["seq"])
        elif kind == "ack":
            self.unacked.pop(frame["client_id"], None)
            self.acked.add(frame["client_id"])
            self.seen.setdefault(frame["seq"], frame["message"])
        elif kind == "synced":
            self.cursor = max(self.cursor, frame["up_to"])
        elif kind == "pong":
            seqs = frame.get("last_seqs")
            self.server_seq = max(seqs.values(), default=0) if seqs else frame.get("last_seq", 0)

    @property
    def behind(self) -> bool:
        """The heartbeat revealed a message this peer never received live."""
        return self.server_seq > self.cursor


async def _pump(peer: Peer, stop: asyncio.Event) -> None:
    """Read frames until the socket closes or ``stop`` is set."""
    with suppress(websockets.ConnectionClosed):
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(peer.ws.recv(), 0.2)  # type: ignore[attr-defined]
            except TimeoutError:
                continue
            peer.take(json.loads(raw))


def _visitor_http(world: ChatWorld, port: int, conv: ChatConversation) -> None:
    """The visitor identified over HTTP on one worker (the token already exists)."""
    r = httpx.post(
        f"http://127.0.0.1:{port}/p/chat/{world.widget.public_key}/api/visitor",
        headers={"X-Chat-Visitor-Token": world.token, "Origin": "https://shop.example"},
        json={},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["conversation"]["id"] == str(conv.external_id)


def _visitor(world: ChatWorld, conv: ChatConversation, port: int) -> Peer:
    async def connect(peer: Peer) -> None:
        await _connect_visitor(world, peer.port, conv, peer)

    async def http(peer: Peer, what: str, payload: dict):  # type: ignore[no-untyped-def]
        base = f"http://127.0.0.1:{peer.port}/p/chat/{world.widget.public_key}/api"
        url = f"{base}/conversations/{conv.external_id}/messages"
        headers = {"X-Chat-Visitor-Token": world.token, "Origin": "https://shop.example"}
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            try:
                if what == "send":
                    r = await client.post(url, json=payload)
                    return r.json()["message"] if r.status_code in (200, 201) else None
                r = await client.get(url, params={"since": payload["since"], "limit": 200})
            except httpx.HTTPError:
                return None
            if r.status_code != 200:
                return None
            body = r.json()
            return body["messages"], body["conversation"]["last_seq"]

    return Peer("visitor", port=port, connector=connect, http=http)


def _agent(cookie: str, conv: ChatConversation, port: int) -> Peer:
    async def connect(peer: Peer) -> None:
        await _connect_agent(cookie, peer.port, conv, peer)

    async def http(peer: Peer, what: str, payload: dict):  # type: ignore[no-untyped-def]
        origin = f"http://127.0.0.1:{peer.port}"
        csrf = "x" * 32  # any well-formed token works when cookie and header agree
        headers = {"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf, "Origin": origin}
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            try:
                if what == "send":
                    r = await client.post(
                        f"{origin}/crm/chat/{conv.external_id}/send/", json=payload
                    )
                    return r.json()["message"] if r.status_code in (200, 201) else None
                r = await client.get(
                    f"{origin}/crm/chat/{conv.external_id}/messages/", params=payload
                )
            except httpx.HTTPError:
                return None
            if r.status_code != 200:
                return None
            body = r.json()
            return body["messages"], body["last_seq"]

    return Peer("agent", port=port, connector=connect, http=http)


async def _connect_visitor(world: ChatWorld, port: int, conv: ChatConversation, peer: Peer) -> None:
    peer.ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/p/chat/{world.widget.public_key}/ws",
        origin="https://shop.example",
        open_timeout=10,
    )
    await peer.ws.send(  # type: ignore[attr-defined]
        json.dumps({"type": "auth", "token": world.token, "conversation": str(conv.external_id),
                    "since": peer.cursor})
    )  # fmt: skip


async def _connect_agent(cookie: str, port: int, conv: ChatConversation, peer: Peer) -> None:
    peer.ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/crm/chat/ws",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )
    await peer.ws.send(  # type: ignore[attr-defined]
        json.dumps(
            {"type": "subscribe", "conversation": str(conv.external_id), "since": peer.cursor}
        )
    )


def _agent_cookie(world: ChatWorld) -> str:
    client = Client()
    client.force_login(world.owner)
    return f"sessionid={client.cookies['sessionid'].value}"


async def _send(
    peer: Peer, conv: ChatConversation, client_id: str, body: str, *, agent: bool
) -> None:
    peer.unacked[client_id] = body
    frame = {"type": "send", "body": body, "client_id": client_id}
    if agent:
        frame["conversation"] = str(conv.external_id)
    with suppress(websockets.ConnectionClosed):
        await peer.ws.send(json.dumps(frame))  # type: ignore[attr-defined]


async def _settle(peers: list[Peer], expected: int, conv: ChatConversation, *, agent_flags: list[bool],
                  timeout: float = 60) -> None:  # fmt: skip
    """Resend unacked, sync on heartbeats, until everyone has ``expected`` seqs (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(p.seen) >= expected and not p.unacked for p in peers):
            return
        for peer, agent in zip(peers, agent_flags, strict=True):
            if peer.closed:  # the server closed it (e.g. its broker connection broke)
                await peer.fall_back_to_http()
                with suppress(OSError, websockets.WebSocketException):
                    await peer.open()
                continue
            with suppress(websockets.ConnectionClosed):
                for client_id, body in list(peer.unacked.items()):
                    await _send(peer, conv, client_id, body, agent=agent)
                await peer.ws.send(json.dumps({"type": "ping"}))  # type: ignore[attr-defined]
                if peer.behind:
                    sync = {"type": "sync", "since": peer.cursor}
                    if agent:
                        sync = {"type": "subscribe", "conversation": str(conv.external_id),
                                "since": peer.cursor}  # fmt: skip
                    await peer.ws.send(json.dumps(sync))  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
    raise AssertionError(
        "not settled: " + ", ".join(
            f"{p.name} saw {len(p.seen)}/{expected} (missing "
            f"{sorted(set(range(1, expected + 1)) - set(p.seen))[:10]}), {len(p.unacked)} unacked, "
            f"server seq {p.server_seq}, cursor {p.cursor}, closed {p.closed}" for p in peers)
    )  # fmt: skip


async def _acked(*peers: Peer, timeout: float = 30) -> None:
    """Wait (bounded) until every send so far is acknowledged, over HTTP if need be."""
    deadline = time.monotonic() + timeout
    while any(p.unacked for p in peers):
        if time.monotonic() > deadline:
            raise AssertionError("sends not acknowledged in time")
        for peer in peers:
            if peer.closed and peer.unacked:
                await peer.fall_back_to_http()
        await asyncio.sleep(0.2)


def _assert_exactly_once(conv: ChatConversation, peers: list[Peer], expected: int) -> None:
    stored = list(
        ChatMessage.objects.filter(conversation=conv)
        .order_by("seq")
        .values_list("seq", "client_id")
    )
    assert [s for s, _ in stored] == list(range(1, expected + 1))  # gap-free, no duplicate
    client_ids = [c for _, c in stored if c]
    assert len(client_ids) == len(set(client_ids))  # every acknowledged send stored once
    for peer in peers:
        assert sorted(peer.seen) == list(range(1, expected + 1)), peer.name
        assert peer.acked <= set(client_ids)


def test_two_workers_exchange_200_messages_each_way_exactly_once(
    tworld: ChatWorld, cluster
) -> None:  # type: ignore[no-untyped-def]
    conv = tworld.conversation()
    tworld.service.assign_conversation(conversation=conv, agent=tworld.owner, by=tworld.owner)
    start_seq = ChatConversation.objects.get(pk=conv.pk).last_seq
    p1, p2 = cluster.start(), cluster.start()
    _visitor_http(tworld, p1, conv)
    cookie = _agent_cookie(tworld)

    async def run() -> tuple[Peer, Peer]:
        visitor, agent = _visitor(tworld, conv, p1), _agent(cookie, conv, p2)
        await visitor.open()
        await agent.open()
        await asyncio.sleep(0.3)
        for i in range(N):
            await _send(visitor, conv, f"v{i}", f"visitor {i}", agent=False)
            await _send(agent, conv, f"a{i}", f"agent {i}", agent=True)
        await _settle([visitor, agent], start_seq + 2 * N, conv, agent_flags=[False, True])
        await visitor.finish()
        await agent.finish()
        return visitor, agent

    visitor, agent = asyncio.run(run())
    _assert_exactly_once(conv, [visitor, agent], start_seq + 2 * N)
    # Without faults the live stream itself carried each message once, in seq order.
    for peer in (visitor, agent):
        live = [s for s in peer.raw if s > start_seq]
        assert len(live) == len(set(live)), f"{peer.name} got duplicates"
        assert live == sorted(live), f"{peer.name} got messages out of order"
    print(f"\ndelivered={2 * N} each way, lost=0, duplicated=0")


def test_sigkill_of_a_worker_and_a_dropped_socket_lose_nothing(tworld: ChatWorld, cluster) -> None:  # type: ignore[no-untyped-def]
    conv = tworld.conversation()
    tworld.service.assign_conversation(conversation=conv, agent=tworld.owner, by=tworld.owner)
    start_seq = ChatConversation.objects.get(pk=conv.pk).last_seq
    p1, p2 = cluster.start(), cluster.start()
    cookie = _agent_cookie(tworld)

    async def run() -> tuple[Peer, Peer]:
        visitor, agent = _visitor(tworld, conv, p1), _agent(cookie, conv, p2)
        await visitor.open()
        await agent.open()
        for i in range(N):
            if i == N // 3:
                # The agent's socket drops mid-stream; it reconnects with since.
                await agent.ws.close()  # type: ignore[attr-defined]
                await agent.open()
            if i == 2 * N // 3:
                # The visitor's worker is SIGKILLed; the visitor moves to the other one.
                cluster.kill(p1)
                await visitor.open(p2)
            await _send(visitor, conv, f"v{i}", f"visitor {i}", agent=False)
            await _send(agent, conv, f"a{i}", f"agent {i}", agent=True)
        await _settle([visitor, agent], start_seq + 2 * N, conv, agent_flags=[False, True])
        await visitor.finish()
        await agent.finish()
        return visitor, agent

    visitor, agent = asyncio.run(run())
    _assert_exactly_once(conv, [visitor, agent], start_seq + 2 * N)
    dup = sum(len(p.raw) - len(set(p.raw)) for p in (visitor, agent))
    print(f"\ndelivered={2 * N} each way, lost=0, duplicated after dedupe=0 (raw repeats {dup})")


def test_a_redis_restart_loses_nothing(tworld: ChatWorld, settings) -> None:  # type: ignore[no-untyped-def]
    redis = RedisServer()
    redis.start()
    cluster = Cluster(redis.url)
    try:
        conv = tworld.conversation()
        tworld.service.assign_conversation(conversation=conv, agent=tworld.owner, by=tworld.owner)
        start_seq = ChatConversation.objects.get(pk=conv.pk).last_seq
        p1, p2 = cluster.start(), cluster.start()
        cookie = _agent_cookie(tworld)

        async def run() -> tuple[Peer, Peer]:
            visitor, agent = _visitor(tworld, conv, p1), _agent(cookie, conv, p2)
            await visitor.open()
            await agent.open()
            for i in range(N):
                if i == N // 2:
                    await _acked(visitor, agent)  # the stream is flowing when Redis dies
                    redis.stop()
                if i == N // 2 + 20:
                    await _acked(visitor, agent)  # these 20 each way went out while it was down
                    redis.start()
                await _send(visitor, conv, f"v{i}", f"visitor {i}", agent=False)
                await _send(agent, conv, f"a{i}", f"agent {i}", agent=True)
            await _settle([visitor, agent], start_seq + 2 * N, conv, agent_flags=[False, True],
                          timeout=90)  # fmt: skip
            await visitor.finish()
            await agent.finish()
            return visitor, agent

        visitor, agent = asyncio.run(run())
        _assert_exactly_once(conv, [visitor, agent], start_seq + 2 * N)
        print(f"\nRedis restarted mid-stream: delivered={2 * N} each way, lost=0, duplicated=0")
    finally:
        cluster.stop()
        redis.stop()
