"""Several real uvicorn processes over PostgreSQL + Redis, and clients that act like ours.

``Cluster`` starts worker processes on loopback ports that share the test database
and one Redis; ``RedisServer`` is a private redis-server a test may stop and start
without disturbing anyone. ``Peer`` follows the same protocol as the widget and
the inbox: it keeps every message once by seq, resends unacknowledged messages
with the same client_id after a reconnect, falls back to HTTP while its socket is
down, and asks for a sync when a heartbeat reveals a higher seq than it has seen.

Every wait here is bounded in count and time; every process is stopped by its
owner in a ``finally`` or a fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import websockets
from django.conf import settings
from django.db import connection
from django.test import Client

from crm.chat.models import ChatConversation, ChatMessage
from tests.conftest import free_port, unavailable

ROOT = Path(__file__).resolve().parents[2]
SHOP = "https://shop.example"  # the allowed origin of the test widget (tests/chat/conftest.py)


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
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
    """Worker processes sharing the test database and one Redis.

    ``db_port`` points the workers at another loopback port than the database's own
    (a proxy that can cut the database away); ``log_dir`` keeps each worker's output
    in a file instead of the test's output, for ``tail`` after a failure.
    """

    def __init__(
        self, redis_url: str, *, db_port: int | None = None, log_dir: Path | None = None
    ) -> None:
        db = connection.settings_dict
        host = db["HOST"] or "127.0.0.1"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{host}:{db_port or db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": redis_url,
            "CRM_DATA_DIR": str(settings.DATA_DIR),
            "CRM_PUBLIC_URL": "http://127.0.0.1",
            "CRM_DB_POOL_SIZE": "4",
            "LOG_LEVEL": "WARNING",
            # This is a delivery test, not an abuse test: let one visitor send fast.
            "CRM_CHAT_RATE_LIMITS": json.dumps({"send_message": [100_000, 60]}),
        }
        self.log_dir = log_dir
        self.procs: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, IO[bytes]] = {}
        self.started = 0

    def start(self) -> int:
        port = free_port()
        out = None
        if self.log_dir is not None:
            self.started += 1
            out = self.logs[port] = (self.log_dir / f"worker-{self.started}-{port}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "crm.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--ws", "wsproto", "--lifespan", "off", "--log-level", "warning"],
            env=self.env, cwd=ROOT, stdout=out, stderr=out,
        )  # fmt: skip
        self.procs[port] = proc
        wait_port(port, proc)
        return port

    @property
    def live_ports(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def pids(self) -> dict[int, int]:
        return {port: proc.pid for port, proc in self.procs.items()}

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        """The end of every worker's log (for a failure message)."""
        parts = []
        for path in sorted(self.log_dir.glob("worker-*.log")) if self.log_dir else []:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        for log in self.logs.values():
            log.close()
        self.logs.clear()


class RedisServer:
    """A private redis-server on a free loopback port, so restarting it disturbs no one."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is needed to restart Redis under test")
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
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


# ---------------------------------------------------------------------- clients

# (peer, what, payload) -> result or None: the HTTP fallback ("send" or "poll").
Http = Callable[["Peer", str, dict], Awaitable[Any]]


@dataclass
class Peer:
    """One chat party: keeps every message once, by seq, and its unacknowledged sends."""

    name: str
    # The conversation this peer follows; frames about other ones (an agent socket
    # also hears the whole inbox) are counted in ``foreign`` and otherwise ignored.
    conversation: str = ""
    seen: dict[int, dict] = field(default_factory=dict)
    raw: list[int] = field(default_factory=list)
    unacked: dict[str, str] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    # When each client_id was last sent, and how many sends were repeats.
    sent_at: dict[str, float] = field(default_factory=dict)
    resent: int = 0
    foreign: int = 0
    errors: Counter = field(default_factory=Counter)  # error frames, by code
    statuses: Counter = field(default_factory=Counter)  # HTTP fallback answers
    reconnects: int = 0
    # Highest seq the server reported in the last heartbeat.
    server_seq: int = 0
    ws: Any = None
    port: int = 0
    connector: Callable[[Peer], Awaitable[None]] | None = None  # (re)connects to self.port
    http: Http | None = None
    # Set when this peer shares an agent's socket with other conversations.
    desk: Desk | None = None
    pumps: list = field(default_factory=list)
    # Everything up to here is held (in-order message frames and "synced" marks);
    # acks can run ahead of it, so they don't move it. Resuming from it is safe.
    cursor: int = 0
    # Message frames are in order only once the current socket has replayed this
    # conversation ("synced"): before that, an agent socket forwards the inbox's live
    # events as they come, and they may skip seqs the replay is about to send.
    in_order: bool = False

    async def open(self, port: int | None = None) -> None:
        """Connect (again) like the real clients do, resuming from the last seq seen."""
        if port is not None:
            self.port = port
        if self.desk is not None:  # the desk counts its own reconnects
            await self.desk.open(self.port)
            return
        if self.ws is not None:
            self.reconnects += 1
        self.in_order = False
        assert self.connector is not None
        await self.connector(self)
        self.pumps.append(asyncio.create_task(_pump(self, self.ws)))

    async def fall_back_to_http(self) -> None:
        """What the widget and the inbox do while their socket is down: send what is
        unacknowledged and poll from the cursor, over plain HTTP."""
        assert self.http is not None
        for client_id, body in list(self.unacked.items()):
            self._note_send(client_id)
            message = await self.http(self, "send", {"body": body, "client_id": client_id})
            if message is None:
                break  # the server can't take it now; the rest would fail the same way
            self.unacked.pop(client_id, None)
            self.acked.add(client_id)
            self.seen.setdefault(message["seq"], message)
        polled = await self.http(self, "poll", {"since": self.cursor})
        if polled is not None:
            messages, last_seq = polled
            for message in messages:
                self.seen.setdefault(message["seq"], message)
                self.cursor = max(self.cursor, message["seq"])
            if len(messages) < 200:
                self.cursor = max(self.cursor, last_seq)

    @property
    def closed(self) -> bool:
        return self.ws is None or self.ws.close_code is not None

    async def finish(self) -> None:
        if self.ws is not None:
            with suppress(websockets.ConnectionClosed):
                await self.ws.close()
        await asyncio.gather(*self.pumps)

    def _note_send(self, client_id: str) -> None:
        if client_id in self.sent_at:
            self.resent += 1
        self.sent_at[client_id] = time.monotonic()

    def take(self, frame: dict) -> None:
        conv = frame.get("conversation")
        if self.conversation and conv is not None and conv != self.conversation:
            self.foreign += 1
            return
        kind = frame.get("type")
        if kind == "message":
            self.raw.append(frame["seq"])
            self.seen.setdefault(frame["seq"], frame["message"])
            if self.in_order:
                self.cursor = max(self.cursor, frame["seq"])
        elif kind == "ack":
            self.unacked.pop(frame["client_id"], None)
            self.acked.add(frame["client_id"])
            self.seen.setdefault(frame["seq"], frame["message"])
        elif kind == "synced":
            self.in_order = True
            self.cursor = max(self.cursor, frame["up_to"])
        elif kind == "pong":
            seqs = frame.get("last_seqs")
            if seqs and self.conversation:
                self.server_seq = seqs.get(self.conversation, 0)
            elif seqs:
                self.server_seq = max(seqs.values(), default=0)
            else:
                self.server_seq = frame.get("last_seq", 0)
        elif kind == "error":
            self.errors[frame.get("code")] += 1

    @property
    def behind(self) -> bool:
        """The heartbeat revealed a message this peer never received live."""
        return self.server_seq > self.cursor

    @property
    def duplicate_frames(self) -> int:
        """Message frames this peer had to drop because it already had their seq."""
        return len(self.raw) - len(set(self.raw))


async def _pump(peer: Peer, ws: Any) -> None:
    """Read the frames of one socket until it closes (``finish`` closes it)."""
    with suppress(websockets.ConnectionClosed):
        async for raw in ws:
            peer.take(json.loads(raw))


def visitor_http(world: Any, port: int, conv: ChatConversation) -> None:
    """The visitor identified over HTTP on one worker (the token already exists)."""
    r = httpx.post(
        f"http://127.0.0.1:{port}/p/chat/{world.widget.public_key}/api/visitor",
        headers={"X-Chat-Visitor-Token": world.token, "Origin": SHOP},
        json={},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["conversation"]["id"] == str(conv.external_id)


def _answer(peer: Peer, r: httpx.Response) -> bool:
    peer.statuses[r.status_code] += 1
    return r.status_code in (200, 201)


def visitor_peer(world: Any, conv: ChatConversation, port: int, token: str | None = None) -> Peer:
    """The widget of ``world``'s visitor (or of the visitor whose token is given)."""
    token = token or world.token
    key = world.widget.public_key

    async def connect(peer: Peer) -> None:
        peer.ws = await websockets.connect(
            f"ws://127.0.0.1:{peer.port}/p/chat/{key}/ws", origin=SHOP, open_timeout=10
        )
        await peer.ws.send(
            json.dumps({"type": "auth", "token": token, "conversation": str(conv.external_id),
                        "since": peer.cursor})
        )  # fmt: skip

    async def http(peer: Peer, what: str, payload: dict) -> Any:
        url = f"http://127.0.0.1:{peer.port}/p/chat/{key}/api/conversations/{conv.external_id}/messages"
        headers = {"X-Chat-Visitor-Token": token, "Origin": SHOP}
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            try:
                if what == "send":
                    r = await client.post(url, json=payload)
                    return r.json()["message"] if _answer(peer, r) else None
                r = await client.get(url, params={"since": payload["since"], "limit": 200})
            except httpx.HTTPError:
                peer.statuses["unreachable"] += 1
                return None
            if not _answer(peer, r):
                return None
            body = r.json()
            return body["messages"], body["conversation"]["last_seq"]

    return Peer("visitor", conversation=str(conv.external_id), port=port, connector=connect,
                http=http)  # fmt: skip


def agent_peer(cookie: str, conv: ChatConversation, port: int) -> Peer:
    """An agent's conversation page: its socket follows ``conv`` (and hears the inbox)."""

    async def connect(peer: Peer) -> None:
        peer.ws = await websockets.connect(
            f"ws://127.0.0.1:{peer.port}/crm/chat/ws",
            origin=f"http://127.0.0.1:{peer.port}",
            additional_headers={"Cookie": cookie},
            open_timeout=10,
        )
        await peer.ws.send(
            json.dumps(
                {"type": "subscribe", "conversation": str(conv.external_id), "since": peer.cursor}
            )
        )

    async def http(peer: Peer, what: str, payload: dict) -> Any:
        origin = f"http://127.0.0.1:{peer.port}"
        csrf = "x" * 32  # any well-formed token works when cookie and header agree
        headers = {"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf, "Origin": origin}
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            try:
                if what == "send":
                    r = await client.post(
                        f"{origin}/crm/chat/{conv.external_id}/send/", json=payload
                    )
                    return r.json()["message"] if _answer(peer, r) else None
                r = await client.get(
                    f"{origin}/crm/chat/{conv.external_id}/messages/", params=payload
                )
            except httpx.HTTPError:
                peer.statuses["unreachable"] += 1
                return None
            if not _answer(peer, r):
                return None
            body = r.json()
            return body["messages"], body["last_seq"]

    return Peer("agent", conversation=str(conv.external_id), port=port, connector=connect,
                http=http)  # fmt: skip


@dataclass
class Desk:
    """An agent's socket with several conversations open: one ``Peer`` per conversation.

    Like the inbox, one socket subscribes to each conversation (with its own resume
    point) and hears the whole inbox; frames go to the peer of their conversation.
    Its peers reconnect it through ``Peer.open``; the first one to get here after a
    drop reconnects (and resends every peer's unacknowledged messages), the others
    find it open.
    """

    cookie: str
    peers: dict[str, Peer] = field(default_factory=dict)
    port: int = 0
    ws: Any = None
    foreign: int = 0
    reconnects: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def follow(self, conv: ChatConversation, port: int) -> Peer:
        peer = agent_peer(self.cookie, conv, port)
        peer.desk = self
        self.peers[peer.conversation] = peer
        return peer

    @property
    def closed(self) -> bool:
        return self.ws is None or self.ws.close_code is not None

    async def open(self, port: int) -> None:
        async with self.lock:
            if not self.closed and port == self.port:
                return  # another of its conversations reconnected it already
            if not self.closed:  # moving to another worker: leave this one politely
                with suppress(websockets.ConnectionClosed):
                    await self.ws.close()
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/crm/chat/ws",
                origin=f"http://127.0.0.1:{port}",
                additional_headers={"Cookie": self.cookie},
                open_timeout=10,
            )
            for conv, peer in self.peers.items():
                subscribe = {"type": "subscribe", "conversation": conv, "since": peer.cursor}
                with suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps(subscribe))
                    # Sent over the socket that died before their ack: again, same client_id.
                    for client_id, body in list(peer.unacked.items()):
                        peer._note_send(client_id)
                        frame = {"type": "send", "body": body, "client_id": client_id}
                        await ws.send(json.dumps({**frame, "conversation": conv}))
            self.reconnects += self.ws is not None
            self.ws, self.port = ws, port
            for peer in self.peers.values():
                peer.ws, peer.port, peer.in_order = ws, port, False
            pump = asyncio.create_task(_desk_pump(self, ws))
            for peer in self.peers.values():
                peer.pumps.append(pump)


async def _desk_pump(desk: Desk, ws: Any) -> None:
    with suppress(websockets.ConnectionClosed):
        async for raw in ws:
            frame = json.loads(raw)
            conv = frame.get("conversation")
            if conv is None:  # ready, pong: about every conversation of the socket
                for peer in desk.peers.values():
                    peer.take(frame)
            elif (peer := desk.peers.get(conv)) is not None:
                peer.take(frame)
            else:  # the rest of the inbox
                desk.foreign += 1


def agent_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def send(
    peer: Peer, conv: ChatConversation, client_id: str, body: str, *, agent: bool
) -> None:
    peer.unacked[client_id] = body
    peer._note_send(client_id)
    frame = {"type": "send", "body": body, "client_id": client_id}
    if agent:
        frame["conversation"] = str(conv.external_id)
    with suppress(websockets.ConnectionClosed):
        await peer.ws.send(json.dumps(frame))


async def heartbeat(peer: Peer, conv: ChatConversation, *, agent: bool, ping: bool = True) -> None:
    """Ping; if the last pong showed a seq this peer never got, ask for a sync.

    ``ping=False`` for the other conversations of a desk: one ping answers for all.
    """
    if ping:
        await peer.ws.send(json.dumps({"type": "ping"}))
    if peer.behind:
        sync: dict[str, Any] = {"type": "sync", "since": peer.cursor}
        if agent:
            sync = {"type": "subscribe", "conversation": str(conv.external_id),
                    "since": peer.cursor}  # fmt: skip
        await peer.ws.send(json.dumps(sync))


async def settle(peers: list[Peer], expected: int, conv: ChatConversation, *, agent_flags: list[bool],
                 timeout: float = 60) -> None:  # fmt: skip
    """Resend unacked, sync on heartbeats, until everyone has ``expected`` seqs (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(p.seen) >= expected and not p.unacked for p in peers):
            return
        for peer, agent in zip(peers, agent_flags, strict=True):
            if peer.closed:  # the server closed it (e.g. its broker connection broke)
                await peer.fall_back_to_http()
                with suppress(OSError, TimeoutError, websockets.WebSocketException):
                    await peer.open()
                continue
            with suppress(websockets.ConnectionClosed):
                for client_id, body in list(peer.unacked.items()):
                    await send(peer, conv, client_id, body, agent=agent)
                await heartbeat(peer, conv, agent=agent)
        await asyncio.sleep(0.5)
    raise AssertionError(
        "not settled: " + ", ".join(
            f"{p.name} saw {len(p.seen)}/{expected} (missing "
            f"{sorted(set(range(1, expected + 1)) - set(p.seen))[:10]}), {len(p.unacked)} unacked, "
            f"server seq {p.server_seq}, cursor {p.cursor}, closed {p.closed}" for p in peers)
    )  # fmt: skip


async def acked(*peers: Peer, timeout: float = 30) -> None:
    """Wait (bounded) until every send so far is acknowledged, over HTTP if need be."""
    deadline = time.monotonic() + timeout
    while any(p.unacked for p in peers):
        if time.monotonic() > deadline:
            raise AssertionError("sends not acknowledged in time")
        for peer in peers:
            if peer.closed and peer.unacked:
                await peer.fall_back_to_http()
        await asyncio.sleep(0.2)


def assert_exactly_once(conv: ChatConversation, peers: list[Peer], expected: int) -> None:
    """Stored once each (gap-free seqs, unique client_ids) and held once by every peer."""
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
