"""Client side of the realtime benchmarks: sockets that speak the baseline's or the product's
protocol, and the three drivers (sequential latency, concurrent throughput, idle sockets).

Every loop is bounded by a count or a deadline, and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import websockets

from bench.common import HOST, BenchError, own_cpu_seconds, percentile

OPEN_TIMEOUT = 15
WAIT = 15  # seconds any one frame may take before the benchmark gives up
_run_ids = itertools.count(1)

Key = tuple[str, str]


def _product_key(frame: dict) -> Key | None:
    kind = frame.get("type")
    if kind == "ack":
        return ("ack", str(frame.get("client_id")))
    if kind == "message":
        return ("msg", str((frame.get("message") or {}).get("client_id")))
    if kind == "error":
        return ("err", str(frame.get("client_id")))
    return None


def _baseline_key(frame: dict) -> Key | None:
    if frame.get("type") == "send":
        return ("msg", str(frame.get("client_id")))
    return None


class Conn:
    """One client socket with a reader task that resolves waiters by (kind, client_id)."""

    def __init__(self, ws: Any, keyfn: Callable[[dict], Key | None]) -> None:
        self.ws = ws
        self.keyfn = keyfn
        self.waiters: dict[Key, asyncio.Future] = {}
        # Message frames received, by the first letter of their client_id ("v"/"a").
        self.received: dict[str, int] = {}
        self.errors: list[dict] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                key = self.keyfn(frame)
                if key is None:
                    continue
                if key[0] == "msg":
                    self.received[key[1][:1]] = self.received.get(key[1][:1], 0) + 1
                elif key[0] == "err":
                    self.errors.append(frame)
                    fut = self.waiters.pop(("ack", key[1]), None)
                    if fut is not None and not fut.done():
                        fut.set_exception(BenchError(f"server refused a send: {frame}"))
                    continue
                fut = self.waiters.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(now)
        except websockets.ConnectionClosed:
            pass
        finally:
            for fut in self.waiters.values():
                if not fut.done():
                    fut.set_exception(BenchError("socket closed while waiting"))
            self.waiters.clear()

    def expect(self, key: Key) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        return fut

    async def close(self) -> None:
        with suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await self.reader


async def _recv_until(ws: Any, kind: str, count: int = 1) -> None:
    """Read (bounded) until ``count`` frames of type ``kind`` came; others are skipped."""
    seen = 0
    deadline = time.monotonic() + WAIT
    while seen < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"no {kind!r} frame within {WAIT} s")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame.get("type") == "error":
            raise BenchError(f"server refused: {frame}")
        if frame.get("type") == kind:
            seen += 1


@dataclass
class Target:
    """What the clients talk to: the bare baseline or the product (one or more workers)."""

    kind: str  # "baseline" | "product"
    ports: list[int]
    # Product only: widget key, allowed origin, agent session cookie, visitor tokens.
    key: str = ""
    origin: str = ""
    cookie: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    # Product only: conversation -> last seq, so a socket resumes instead of replaying.
    since: Callable[[list[str]], dict[str, int]] | None = None
    # Offer permessage-deflate like browsers do (the server accepts it when offered).
    deflate: bool = True

    @property
    def keyfn(self) -> Callable[[dict], Key | None]:
        return _product_key if self.kind == "product" else _baseline_key

    def ack_key(self, client_id: str) -> Key:
        """What tells a sender its message was taken: the product's ack, the baseline's echo."""
        return ("ack" if self.kind == "product" else "msg", client_id)

    def _connect(self, url: str, **kwargs: Any) -> Any:
        return websockets.connect(
            url,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
            compression="deflate" if self.deflate else None,
            **kwargs,
        )

    def _since(self, conversations: list[str]) -> dict[str, int]:
        return self.since(conversations) if self.since else {}

    async def visitor_ws(self, conversation: str, port: int) -> Any:
        """An authenticated visitor socket (the product's "ready" frame received)."""
        if self.kind == "baseline":
            ws = await self._connect(f"ws://{HOST}:{port}/ws")
            await ws.send(json.dumps({"type": "join", "room": conversation}))
            await _recv_until(ws, "ready")
            return ws
        since = self._since([conversation]).get(conversation, 0)
        ws = await self._connect(f"ws://{HOST}:{port}/p/chat/{self.key}/ws", origin=self.origin)
        await ws.send(json.dumps({"type": "auth", "token": self.tokens[conversation],
                                  "conversation": conversation, "since": since}))  # fmt: skip
        await _recv_until(ws, "ready")
        return ws

    async def visitor(self, conversation: str, port: int) -> Conn:
        return Conn(await self.visitor_ws(conversation, port), self.keyfn)

    async def agent(self, conversations: list[str], port: int) -> Conn:
        """One agent socket following every conversation given."""
        if self.kind == "baseline":
            ws = await self._connect(f"ws://{HOST}:{port}/ws")
            for conv in conversations:
                await ws.send(json.dumps({"type": "join", "room": conv}))
            await _recv_until(ws, "ready", len(conversations))
            return Conn(ws, self.keyfn)
        since = self._since(conversations)
        ws = await self._connect(
            f"ws://{HOST}:{port}/crm/chat/ws",
            origin=f"http://{HOST}:{port}",
            additional_headers={"Cookie": self.cookie},
        )
        await _recv_until(ws, "ready")
        for conv in conversations:
            await ws.send(json.dumps({"type": "subscribe", "conversation": conv,
                                      "since": since.get(conv, 0)}))  # fmt: skip
        await _recv_until(ws, "subscribed", len(conversations))
        return Conn(ws, self.keyfn)

    def visitor_frame(self, conversation: str, client_id: str, body: str) -> str:
        if self.kind == "baseline":
            return json.dumps(
                {"type": "send", "room": conversation, "body": body, "client_id": client_id}
            )
        return json.dumps({"type": "send", "body": body, "client_id": client_id})

    def agent_frame(self, conversation: str, client_id: str, body: str) -> str:
        if self.kind == "baseline":
            return self.visitor_frame(conversation, client_id, body)
        return json.dumps(
            {"type": "send", "conversation": conversation, "body": body, "client_id": client_id}
        )


async def _gather_bounded(coros: list, batch: int) -> list:
    """Run coroutines ``batch`` at a time (opening 1,000 sockets at once helps nobody)."""
    out: list = []
    for i in range(0, len(coros), batch):
        out.extend(await asyncio.gather(*coros[i : i + batch]))
    return out


# --------------------------------------------------------------------------- latency


async def latency(
    target: Target,
    conversation: str,
    count: int,
    cpu: Callable[[], float],
    warmup: int = 50,
    extra_cpu: Callable[[], float] | None = None,
) -> dict:
    """Visitor sends, agent receives, one message at a time: p50/p99 and CPU per message.

    The next message goes only after the agent got the previous one and the visitor
    got its ack, so the server is never loaded by more than one message.
    """
    port = target.ports[0]
    run = next(_run_ids)
    agent = await target.agent([conversation], port)
    visitor = await target.visitor(conversation, port)
    samples: list[float] = []
    try:

        async def one(i: int, record: bool) -> None:
            cid = f"v{run}-lat-{i}"
            got = agent.expect(("msg", cid))
            acked = visitor.expect(target.ack_key(cid))
            t0 = time.perf_counter()
            await visitor.ws.send(target.visitor_frame(conversation, cid, f"latency probe {i}"))
            t1 = await asyncio.wait_for(got, WAIT)
            await asyncio.wait_for(acked, WAIT)
            if record:
                samples.append(t1 - t0)

        for i in range(warmup):
            await one(-1 - i, False)
        extra0 = extra_cpu() if extra_cpu else 0.0
        cpu0, wall0 = cpu(), time.perf_counter()
        for i in range(count):
            await one(i, True)
        cpu1, wall1 = cpu(), time.perf_counter()
        extra1 = extra_cpu() if extra_cpu else 0.0
    finally:
        await visitor.close()
        await agent.close()
    return {
        "messages": count,
        "p50_ms": percentile(samples, 50) * 1000,
        "p90_ms": percentile(samples, 90) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "server_cpu_s": cpu1 - cpu0,
        "cpu_us_per_msg": (cpu1 - cpu0) / count * 1e6,
        # PostgreSQL backends + Redis, when given: the rest of the stack's CPU.
        "db_redis_cpu_s": extra1 - extra0,
        "wall_s": wall1 - wall0,
    }


# ------------------------------------------------------------------------ throughput


async def throughput(
    target: Target,
    conversations: list[str],
    *,
    duration: float,
    warmup: float,
    reply_every: int,
    cpu: Callable[[], float],
    stored: Callable[[], int] | None,
    extra_cpu: Callable[[], float] | None = None,
) -> dict:
    """Every conversation's visitor sends in a closed loop (next send after its ack); one
    agent socket follows them all and replies to every ``reply_every``-th message, one
    reply in flight at a time. Visitors are spread over the target's ports (workers).

    Counted over a fixed window after a warm-up: messages stored (rows in the database,
    for the product) or acknowledged (baseline), and agent deliveries. Afterwards the
    agent must have received every visitor message (bounded drain).
    """
    run = next(_run_ids)
    ports = target.ports
    agent = await target.agent(conversations, ports[0])
    visitors = await _gather_bounded(
        [target.visitor(c, ports[i % len(ports)]) for i, c in enumerate(conversations)], 25
    )
    stop = asyncio.Event()
    acked = {"v": 0, "a": 0}
    replies: asyncio.Queue[str] = asyncio.Queue()
    failures: list[str] = []

    async def visitor_loop(i: int, conv: str, conn: Conn) -> None:
        n = 0
        while not stop.is_set():
            cid = f"v{run}-{i}-{n}"
            fut = conn.expect(target.ack_key(cid))
            await conn.ws.send(target.visitor_frame(conv, cid, f"visitor {i} message {n}"))
            await asyncio.wait_for(fut, WAIT)
            acked["v"] += 1
            n += 1
            if reply_every and n % reply_every == 0:
                replies.put_nowait(conv)

    async def agent_loop() -> None:
        n = 0
        while not stop.is_set():
            try:
                conv = await asyncio.wait_for(replies.get(), 0.2)
            except TimeoutError:
                continue
            cid = f"a{run}-{n}"
            fut = agent.expect(target.ack_key(cid))
            await agent.ws.send(target.agent_frame(conv, cid, f"agent reply {n}"))
            await asyncio.wait_for(fut, WAIT)
            acked["a"] += 1
            n += 1

    async def guarded(coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            failures.append(repr(exc))
            stop.set()

    tasks = [asyncio.create_task(guarded(agent_loop()))]
    tasks += [
        asyncio.create_task(guarded(visitor_loop(i, c, v)))
        for i, (c, v) in enumerate(zip(conversations, visitors, strict=True))
    ]
    result: dict[str, Any] = {}
    try:
        await asyncio.sleep(warmup)

        def snapshot() -> tuple:
            return (time.perf_counter(), cpu(), own_cpu_seconds(), stored() if stored else 0,
                    acked["v"] + acked["a"], agent.received.get("v", 0),
                    extra_cpu() if extra_cpu else 0.0)  # fmt: skip

        s0 = snapshot()
        await asyncio.sleep(duration)
        s1 = snapshot()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT + 5)
        # Drain: every acknowledged visitor message must reach the agent socket.
        deadline = time.monotonic() + 10
        while agent.received.get("v", 0) < acked["v"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        wall = s1[0] - s0[0]
        result = {
            "conversations": len(conversations),
            "workers": len(ports),
            "window_s": wall,
            "stored_per_s": (s1[3] - s0[3]) / wall if stored else None,
            "acked_per_s": (s1[4] - s0[4]) / wall,
            "agent_delivered_per_s": (s1[5] - s0[5]) / wall,
            "server_cpu_cores": (s1[1] - s0[1]) / wall,
            # Worker CPU (all threads of every worker) over the window: the scaling figure
            # is stored messages per worker-CPU-second (bench/README.md, "Scaling").
            "server_cpu_s": s1[1] - s0[1],
            "stored_per_server_cpu_s": (s1[3] - s0[3]) / (s1[1] - s0[1])
            if stored and s1[1] > s0[1]
            else None,
            "client_cpu_cores": (s1[2] - s0[2]) / wall,
            "db_redis_cpu_cores": (s1[6] - s0[6]) / wall,
            "visitor_sent": acked["v"],
            "agent_replies": acked["a"],
            "undelivered_to_agent": acked["v"] - agent.received.get("v", 0),
            "failures": failures[:5],
        }
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(v.close() for v in visitors), agent.close())
    if failures:
        raise BenchError(f"throughput run failed: {failures[0]}")
    return result


# ---------------------------------------------------------------------- idle sockets


async def idle_sockets(
    target: Target, conversations: list[str], rss_kb: Callable[[], int], warm: int = 20
) -> dict:
    """Open one authenticated socket per conversation and leave it idle: RSS growth each."""
    port = target.ports[0]
    warm_ws = await _gather_bounded([target.visitor_ws(c, port) for c in conversations[:warm]], 25)
    await asyncio.gather(*(ws.close() for ws in warm_ws))
    await asyncio.sleep(1.0)
    before = rss_kb()
    t0 = time.perf_counter()
    sockets = await _gather_bounded([target.visitor_ws(c, port) for c in conversations], 50)
    opened_s = time.perf_counter() - t0
    try:
        await asyncio.sleep(2.0)
        after = rss_kb()
    finally:
        await _gather_bounded([_close(ws) for ws in sockets], 200)
    return {
        "sockets": len(sockets),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_socket": (after - before) / len(sockets),
        "open_and_auth_s": opened_s,
    }


async def _close(ws: Any) -> None:
    with suppress(Exception):
        await asyncio.wait_for(ws.close(), 5)
