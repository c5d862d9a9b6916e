"""Under load: two workers, visitors sending through both at a fixed offered rate, agents
listening on the other worker; an inbox page timed meanwhile; a step-up to saturation.

Why open-loop: a closed loop (next send after the ack, as the throughput run does) slows
down with the server, so it never sees the queue a real crowd of visitors builds when the
product falls behind. Here message ``k`` is due at ``t0 + k / rate`` whatever happened to
the ones before it: a server that can't keep up shows it as growing latency and as
messages not acknowledged, instead of a politely lower offered rate.

Why the *other* worker: with several workers an agent is, in general, connected to a
different process than the visitor, so every delivery crosses the channel layer (Redis).
Conversation ``i`` sends through worker ``i % 2``, over HTTP (the widget's public JSON
API) when ``(i // 2) % 2 == 0`` and over the visitor WebSocket otherwise, so both workers
take both transports. One agent socket per worker follows every conversation (agents
hear every message through the inbox group anyway); a message's delivery is timed at
the agent socket of the worker it was *not* sent through.

Every loop is bounded by a count or a deadline, every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import websockets

from bench import http1, load, pageprobe
from bench.common import HOST, PYTHON, ROOT, BenchError, own_cpu_seconds, percentile

ACK_TIMEOUT = 10.0  # a send not acknowledged by then counts as not acknowledged
LIVE_WITHIN = 10.0  # a delivery later than this after the ack counts as never live
P99_TARGET_MS = 100.0  # the cross-worker delivery target at 200 msgs/s
PAGE_TARGET_MS = 50.0  # the inbox page target during load
PAGE_GRACE = 10.0  # seconds the page probe may run past the load window (slow pages)
BROWSER_CONNECTIONS = 6  # HTTP connections a browser opens to one host
STEP_DOWNS = 3  # rates tried below the first step when even that one fails
_run_ids = itertools.count(1)


# ------------------------------------------------------------------------- senders


class Sender(Protocol):
    worker: int
    via: str

    async def send(self, client_id: str, body: str) -> float:
        """Send one visitor message; return the time its acknowledgement arrived."""
        ...


class SendFailed(Exception):
    """The product answered a send with something other than an acknowledgement."""


@dataclass
class WsSender:
    """A visitor WebSocket: the product's ``ack`` frame is the acknowledgement."""

    conn: load.Conn
    target: load.Target
    conversation: str
    worker: int
    via: str = "ws"

    async def send(self, client_id: str, body: str) -> float:
        key = self.target.ack_key(client_id)
        fut = self.conn.expect(key)
        try:
            await self.conn.ws.send(self.target.visitor_frame(self.conversation, client_id, body))
            return await fut
        except BenchError as exc:  # an error frame for this client_id, or the socket closed
            raise SendFailed(self._why(client_id, exc)) from exc
        except websockets.ConnectionClosed as exc:
            raise SendFailed(
                f"ws: socket closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            ) from exc
        finally:
            self.conn.waiters.pop(key, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: it is reported as this send's failure
            else:
                fut.cancel()

    def _why(self, client_id: str, exc: Exception) -> str:
        """The error frame's code (``ws rate_limited: …``), or why the socket gave up."""
        for frame in reversed(self.conn.errors):
            if frame.get("client_id") == client_id:
                return f"ws {frame.get('code')}: {str(frame.get('message'))[:80]}"
        return f"ws: {str(exc)[:120]}"


@dataclass
class HttpSender:
    """The widget's JSON API: ``201 Created`` (with the stored message) is the acknowledgement."""

    pool: http1.Pool  # this visitor's connections, as a browser would hold them
    path: str
    headers: list[tuple[str, str]]
    worker: int
    via: str = "http"

    async def send(self, client_id: str, body: str) -> float:
        payload = json.dumps({"body": body, "client_id": client_id}).encode()
        status, answer = await self.pool.request("POST", self.path, self.headers, payload)
        now = time.perf_counter()
        if status != 201:
            raise SendFailed(f"http {status}: {answer[:120].decode(errors='replace')}")
        return now


# --------------------------------------------------------------------------- world


@dataclass
class World:
    """Everything the phase drives, opened once and reused by every run at every rate."""

    target: load.Target
    conversations: list[str]
    agents: list[load.Conn]  # index: worker
    senders: list[Sender]  # index: conversation

    def closed(self) -> dict[str, int]:
        """Sockets that ended while the phase still used them (the server closed them)."""
        visitors = [s.conn for s in self.senders if isinstance(s, WsSender)]
        return {"agent": sum(c.reader.done() for c in self.agents),
                "visitor": sum(c.reader.done() for c in visitors)}  # fmt: skip

    async def close(self) -> None:
        conns = [s.conn for s in self.senders if isinstance(s, WsSender)] + self.agents
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        for s in self.senders:
            if isinstance(s, HttpSender):
                s.pool.close()


def route(i: int, workers: int) -> tuple[int, str]:
    """Which worker and transport conversation ``i`` sends through."""
    return i % workers, ("http" if (i // workers) % 2 == 0 else "ws")


async def open_world(target: load.Target, conversations: list[str]) -> World:
    ports = target.ports
    agents: list[load.Conn] = []

    async def sender(i: int, conv: str) -> Sender:
        worker, via = route(i, len(ports))
        if via == "http":
            path = f"/p/chat/{target.key}/api/conversations/{conv}/messages"
            headers = [("Content-Type", "application/json"), ("Origin", target.origin),
                       ("X-Chat-Visitor-Token", target.tokens[conv])]  # fmt: skip
            return HttpSender(http1.Pool(HOST, ports[worker], BROWSER_CONNECTIONS), path,
                              headers, worker)  # fmt: skip
        return WsSender(await target.visitor(conv, ports[worker]), target, conv, worker)

    try:
        for port in ports:
            agents.append(await target.agent(conversations, port))
        senders = await load._gather_bounded(
            [sender(i, c) for i, c in enumerate(conversations)], 25
        )
    except BaseException:
        await asyncio.gather(*(a.close() for a in agents))
        raise
    return World(target, conversations, agents, senders)


# ---------------------------------------------------------------------- one run


@dataclass
class Sent:
    """One visitor message and what became of it (times are ``perf_counter`` seconds)."""

    client_id: str
    conversation: int
    worker: int
    via: str
    due: float
    counted: bool
    start: float = 0.0
    ack: float | None = None
    error: str | None = None
    cross: asyncio.Future | None = None  # the agent socket on the other worker
    same: asyncio.Future | None = None  # the agent socket on the sender's worker

    @staticmethod
    def arrival(fut: asyncio.Future | None) -> float | None:
        if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
            return None
        return fut.result()


Meter = Callable[[], dict[str, float]]


@dataclass
class Run:
    """The messages of one offered rate and the meters around its counted window."""

    tag: str
    rate: float
    seconds: float
    messages: list[Sent] = field(default_factory=list)
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)  # launch time - due time
    drained: float = 0.0  # when the wait for deliveries ended


async def offer(world: World, rate: float, seconds: float, warmup: float, meter: Meter) -> Run:
    """Launch sends on an open-loop schedule, then wait (bounded) for acks and deliveries."""
    run = Run(f"L{next(_run_ids)}-{int(rate)}", rate, seconds)
    total = max(1, round(rate * (warmup + seconds)))
    warm = round(rate * warmup)
    tasks: list[asyncio.Task] = []
    before: asyncio.Future | None = None
    t0 = time.perf_counter() + 0.05
    for k in range(total):
        due = t0 + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if k == warm:
            # In a thread: the meter asks PostgreSQL for its backends, and a loaded
            # database must not hold up the schedule.
            before = asyncio.ensure_future(asyncio.to_thread(meter))
        run.lag.append(time.perf_counter() - due)
        tasks.append(asyncio.create_task(_send_one(world, run, k, due, k >= warm)))
    run.after = await asyncio.wait_for(asyncio.to_thread(meter), 30)
    run.before = await asyncio.wait_for(before, 30) if before else run.after
    await asyncio.wait_for(asyncio.gather(*tasks), ACK_TIMEOUT + 10)
    run.drained = await _await_deliveries(world, run.messages)
    return run


async def _send_one(world: World, run: Run, k: int, due: float, counted: bool) -> None:
    conv = k % len(world.senders)
    sender = world.senders[conv]
    cid = f"{run.tag}{'' if counted else 'w'}-{k}"
    msg = Sent(cid, conv, sender.worker, sender.via, due, counted)
    run.messages.append(msg)
    key = ("msg", cid)
    msg.cross = world.agents[(sender.worker + 1) % len(world.agents)].expect(key)
    msg.same = world.agents[sender.worker].expect(key) if len(world.agents) > 1 else None
    msg.start = time.perf_counter()
    try:
        msg.ack = await asyncio.wait_for(sender.send(cid, f"load {cid}"), ACK_TIMEOUT)
    except TimeoutError:
        msg.error = f"no ack within {ACK_TIMEOUT:.0f} s"
    except SendFailed as exc:
        msg.error = str(exc)
    except OSError as exc:
        msg.error = f"{msg.via}: {type(exc).__name__} {str(exc)[:80]}".strip()


async def _await_deliveries(world: World, messages: list[Sent]) -> float:
    """Wait until every acknowledged message reached the other worker's agent, or 10 s
    after the last acknowledgement; then stop listening for the missing ones."""
    acks = [m.ack for m in messages if m.ack is not None]
    deadline = (max(acks) if acks else time.perf_counter()) + LIVE_WITHIN
    while time.perf_counter() < deadline:
        if all(m.cross is not None and m.cross.done() for m in messages if m.ack is not None):
            break
        await asyncio.sleep(0.05)
    for m in messages:
        for fut in (m.cross, m.same):
            if fut is not None and not fut.done():
                fut.cancel()
            elif fut is not None and not fut.cancelled():
                fut.exception()  # retrieved: a closed socket's error is counted, not logged
        for agent in world.agents:
            agent.waiters.pop(("msg", m.client_id), None)
    return time.perf_counter()


# ------------------------------------------------------------------ the numbers


def _ms(values: list[float], pct: float) -> float | None:
    return percentile(values, pct) * 1000 if values else None


@dataclass
class Deliveries:
    """When the acknowledged messages reached the agents (seconds)."""

    from_ack: list[float] = field(default_factory=list)  # 0 when before the ack
    from_start: list[float] = field(default_factory=list)
    same_worker: list[float] = field(default_factory=list)
    by_via: dict[str, list[float]] = field(default_factory=lambda: {"http": [], "ws": []})
    before_ack: int = 0
    late: Counter[str] = field(default_factory=Counter)  # not within 10 s, by transport
    never: Counter[str] = field(default_factory=Counter)  # not by the end of the drain


def deliveries(acked: list[Sent], drained: float) -> Deliveries:
    """Cross-worker delivery times of acknowledged messages.

    Late ones (after 10 s, before the wait ended) count in the percentiles too, and as
    not delivered live. Ones that never arrived count at the time waited for them (at
    least 10 s): the percentiles are then lower bounds, and never missing because the
    product was too slow to deliver anything in time.
    """
    out = Deliveries()
    for m in acked:
        ack, arrival = m.ack or 0.0, Sent.arrival(m.cross)
        got = drained if arrival is None else arrival
        if arrival is None:
            out.never[m.via] += 1
        if arrival is None or got - ack > LIVE_WITHIN:
            out.late[m.via] += 1
        out.before_ack += got < ack
        out.from_ack.append(max(0.0, got - ack))
        out.from_start.append(got - m.start)
        out.by_via[m.via].append(max(0.0, got - ack))
        if (same := Sent.arrival(m.same)) is not None:
            out.same_worker.append(max(0.0, same - ack))
    return out


def summarize(run: Run, persisted: int) -> dict[str, Any]:
    """Figures of one run over its counted messages (warm-up messages excluded)."""
    counted = [m for m in run.messages if m.counted]
    acked = [m for m in counted if m.ack is not None]
    d = deliveries(acked, run.drained)
    ack_times = [(m.ack or 0.0) - m.start for m in acked]
    b, a = run.before, run.after
    wall = a["t"] - b["t"]
    acks_in_window = sum(1 for m in run.messages if m.ack is not None and b["t"] <= m.ack <= a["t"])
    out: dict[str, Any] = {
        "offered_per_s": run.rate,
        "window_s": wall,
        "offered": len(counted),
        "launched_per_s": len(counted) / wall if wall > 0 else None,
        "scheduler_lag_p99_ms": _ms(run.lag, 99),
        "scheduler_lag_max_ms": max(run.lag) * 1000 if run.lag else None,
        "acked": len(acked),
        "acked_per_s": acks_in_window / wall if wall > 0 else None,
        "persisted": persisted,
        "errors": dict(Counter(m.error for m in counted if m.error).most_common()),
        "ack_p50_ms": _ms(ack_times, 50),
        "ack_p99_ms": _ms(ack_times, 99),
        "delivery_p50_ms": _ms(d.from_ack, 50),
        "delivery_p99_ms": _ms(d.from_ack, 99),
        "delivery_max_ms": max(d.from_ack) * 1000 if d.from_ack else None,
        "delivery_from_start_p50_ms": _ms(d.from_start, 50),
        "delivery_from_start_p99_ms": _ms(d.from_start, 99),
        "delivered_before_ack": d.before_ack,
        "undelivered_10s": sum(d.late.values()),
        "undelivered_10s_by_transport": dict(d.late),
        "never_arrived": sum(d.never.values()),
        "never_arrived_by_transport": dict(d.never),
        "same_worker_delivery_p50_ms": _ms(d.same_worker, 50),
        "same_worker_delivery_p99_ms": _ms(d.same_worker, 99),
        "delivery_p99_ms_by_transport": {k: _ms(v, 99) for k, v in d.by_via.items()},
        "server_cpu_cores": (a["server_cpu"] - b["server_cpu"]) / wall if wall > 0 else None,
        "db_redis_cpu_cores": (a["extra_cpu"] - b["extra_cpu"]) / wall if wall > 0 else None,
        "client_cpu_cores": (a["client_cpu"] - b["client_cpu"]) / wall if wall > 0 else None,
    }
    out["held"] = held(out)
    return out


def held(s: dict[str, Any]) -> bool:
    """The step-up's criterion: p99 within target, and every message acked, stored, delivered."""
    p99 = s["delivery_p99_ms"]
    return (
        p99 is not None
        and p99 <= P99_TARGET_MS
        and s["acked"] == s["offered"]
        and s["persisted"] == s["offered"]
        and s["undelivered_10s"] == 0
    )


# ------------------------------------------------------------------ the phase


@dataclass
class Setup:
    """What the phase needs from the runner (bench/run.py)."""

    rate: float
    seconds: float
    warmup: float
    steps: list[float]
    step_seconds: float
    step_budget: float  # seconds the step-up may start new steps for
    quiesce: float  # seconds to wait at most for the workers to go quiet after a run
    pages: int
    page_port: int
    cookie: str
    server_cpu: Callable[[], float]
    extra_cpu: Callable[[], float]
    persisted: Callable[[str], int]  # rows whose client_id starts with the given prefix
    quiet: Callable[[], int]  # total rows: the server is quiet when it stops moving
    say: Callable[[str], None]


async def measure(setup: Setup, target: load.Target, conversations: list[str]) -> dict[str, Any]:
    """The load run with the inbox page probe, then the step-up to saturation."""
    world = await open_world(target, conversations)
    try:
        setup.say(f"load: {len(conversations)} conversations, {setup.rate:.0f} msgs/s offered "
                  f"for {setup.seconds:.0f} s, inbox page probed {setup.pages} times")  # fmt: skip
        main, pages = await _main_run(setup, world)
        steps = await step_up(setup, world, main)
        closed = world.closed()
    finally:
        await world.close()
    return {
        "saturation_note": _saturation_note(setup, steps),
        "first_failed_per_s": _failed_above(steps),
        "conversations": len(conversations),
        "workers": len(target.ports),
        "main": main,
        "inbox_page": pages,
        "steps": steps,
        "saturation_per_s": _held_max(steps),
        "sockets_closed_by_server": closed,
        "max_acked_per_s": max(s["acked_per_s"] or 0.0 for s in [main, *steps]),
    }


def _saturation_note(setup: Setup, steps: list[dict]) -> str:
    """Why the saturation figure is only a lower bound, when it is one."""
    if not steps or not steps[-1]["held"] or _failed_above(steps) is not None:
        return ""
    if steps[-1]["offered_per_s"] >= max(setup.steps):
        return "every step held: the product saturates above the highest step"
    return "the step-up ran out of its time budget while the last step still held"


def _failed_above(steps: list[dict]) -> float | None:
    """The lowest failed rate above the saturation figure: the product saturates between."""
    held = _held_max(steps)
    return min((s["offered_per_s"] for s in steps
                if not s["held"] and s["offered_per_s"] > held), default=None)  # fmt: skip


def _meter(setup: Setup) -> Meter:
    def snapshot() -> dict[str, float]:
        return {"t": time.perf_counter(), "server_cpu": setup.server_cpu(),
                "extra_cpu": setup.extra_cpu(), "client_cpu": own_cpu_seconds()}  # fmt: skip

    return snapshot


async def _main_run(setup: Setup, world: World) -> tuple[dict, dict]:
    probe = await _start_page_probe(setup)
    try:
        await _page_probe_warm(probe)
        run = await offer(world, setup.rate, setup.seconds, setup.warmup, _meter(setup))
        pages = await _finish_page_probe(probe, setup)
    finally:
        if probe.returncode is None:
            probe.kill()
            await probe.wait()
    return await _settle(setup, world, run), pages


async def _settle(setup: Setup, world: World, run: Run) -> dict[str, Any]:
    """Let the workers finish what they still hold, then count what they stored.

    Sends that timed out may still be queued in a worker, and deliveries the wait gave
    up on may still be on their way to the agents: both would load the next step.
    """
    waited, quiet = 0.0, True
    if not all(m.ack and _arrived(m.cross) and _arrived(m.same) for m in run.messages):
        waited, quiet = await _quiesce(setup, world)
    result = summarize(run, setup.persisted(f"{run.tag}-"))
    result.update(quiesce_s=waited, went_quiet=quiet)
    return result


def _arrived(fut: asyncio.Future | None) -> bool:
    return fut is None or Sent.arrival(fut) is not None


async def _quiesce(setup: Setup, world: World) -> tuple[float, bool]:
    """Wait until the stored rows and the agents' received frames stop moving for a second
    (bounded); return the seconds waited and whether they did."""

    def state() -> tuple[int, int]:
        return setup.quiet(), sum(sum(a.received.values()) for a in world.agents)

    t0 = time.monotonic()
    last, still_since = state(), t0
    while time.monotonic() - t0 < setup.quiesce:
        if time.monotonic() - still_since >= 1.0:
            return time.monotonic() - t0, True
        await asyncio.sleep(0.2)
        if (now := state()) != last:
            last, still_since = now, time.monotonic()
    return time.monotonic() - t0, False


async def step_up(setup: Setup, world: World, main: dict) -> list[dict]:
    """Raise the offered rate until delivery p99 exceeds the target or a message is lost.

    A step at the main run's rate reuses the main run (the same test, longer). If even
    the first step fails, lower rates are tried (``step_downs``) until one holds, then
    doubled back up while below the lowest failure, so the figure says where the product
    stands rather than just "below the first step". No step starts after
    ``step_budget`` seconds: a saturated step takes its 10 s drains.
    """
    deadline = time.monotonic() + setup.step_budget
    out: list[dict] = []

    async def holds(rate: float) -> bool | None:
        """Run one step; None when the budget is spent."""
        if time.monotonic() > deadline:
            return None
        result = main if rate == setup.rate else await _step(setup, world, rate)
        out.append(result)
        return result["held"]

    for rate in setup.steps:
        if not await holds(rate):
            break
    if not out or any(s["held"] for s in out):
        return out
    acked = max(s["acked_per_s"] or 0.0 for s in out)
    for rate in step_downs(setup.steps[0], acked):
        if (ok := await holds(rate)) is None or ok:
            break
    while (top := _held_max(out)) and (failed := _failed_above(out)) and top * 2 < failed:
        if not await holds(top * 2):
            break
    return out


def _held_max(steps: list[dict]) -> float:
    return max((s["offered_per_s"] for s in steps if s["held"]), default=0.0)


def step_downs(first: float, acked_per_s: float) -> list[float]:
    """Halvings of the first step, from the first one under 80 % of the acknowledged rate
    the product managed when overloaded: an offered rate above that can only queue."""
    rates = [first / 2**k for k in range(1, 9)]
    below = [r for r in rates if r <= 0.8 * acked_per_s] or rates[-1:]
    return below[:STEP_DOWNS]


async def _step(setup: Setup, world: World, rate: float) -> dict[str, Any]:
    run = await offer(world, rate, setup.step_seconds, 0.0, _meter(setup))
    result = await _settle(setup, world, run)
    setup.say(f"load: step {rate:g} msgs/s: acked {result['acked_per_s']:.0f}/s, delivery "
              f"p99 {_fmt(result['delivery_p99_ms'])} ms, {result['offered'] - result['acked']} "
              f"not acked, {result['undelivered_10s']} undelivered -> "
              f"{'held' if result['held'] else 'saturated'}")  # fmt: skip
    return result


def _fmt(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.0f}"


# ------------------------------------------------------------- inbox page probe


async def _start_page_probe(setup: Setup) -> asyncio.subprocess.Process:
    """The inbox page is timed from a separate process: the load generator's event loop
    (and its GIL) would otherwise add its own delays to the page's round trip."""
    interval = setup.seconds / max(1, setup.pages)
    deadline = setup.warmup + setup.seconds + PAGE_GRACE
    env = {**os.environ, "CRM_BENCH_COOKIE": setup.cookie}
    return await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.pageprobe", "--port", str(setup.page_port), "--path", "/crm/chat/",
        "--count", str(setup.pages), "--interval", f"{interval:.3f}",
        "--delay", f"{setup.warmup + 0.05:.3f}", "--deadline", f"{deadline:.1f}",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _page_probe_warm(probe: asyncio.subprocess.Process) -> None:
    """Wait (bounded) for the probe's warm-ups, done before the load on an idle server."""
    assert probe.stdout is not None
    try:
        line = await asyncio.wait_for(probe.stdout.readline(), 2 * pageprobe.TIMEOUT + 10)
    except TimeoutError as exc:
        raise BenchError("the inbox page probe did not warm up in time") from exc
    if line.strip() != b"warm":
        raise BenchError(f"the inbox page probe did not start: {line[:200]!r}")


async def _finish_page_probe(probe: asyncio.subprocess.Process, setup: Setup) -> dict:
    # The probe stops starting requests at its deadline; the last may take its 10 s.
    limit = setup.warmup + setup.seconds + PAGE_GRACE + 2 * pageprobe.TIMEOUT + 10
    try:
        out, err = await asyncio.wait_for(probe.communicate(), limit)
    except TimeoutError as exc:
        raise BenchError(f"the inbox page probe did not finish within {limit:.0f} s") from exc
    if probe.returncode != 0:
        raise BenchError(f"the inbox page probe failed: {err.decode()[-300:]}")
    data = json.loads(out.decode().strip().splitlines()[-1])
    times = data["times_ms"]
    data.update(
        p50_ms=percentile(times, 50) if times else None,
        p99_ms=percentile(times, 99) if times else None,
        max_ms=max(times) if times else None,
    )
    return data
