"""``python -m bench``: every benchmark, against a bare baseline measured in the same run.

Phases (each bounded in count and time, all on 127.0.0.1):

1. baseline  bare ASGI broadcast server (bench/baseline_server.py), same uvicorn + wsproto
2. sqlite    the product on SQLite, events in the process, one worker; widget weight;
             py-spy profile of the delivery hot path
3. postgres  the product on PostgreSQL (database crm_bench) + a private Redis (db 14),
             one worker, then two; persisted messages per worker-CPU-second
4. load      two workers on PostgreSQL (crm_bench_load) + Redis under an open-loop offered
             rate through both (HTTP and WebSocket), agents on the other worker: delivery
             latency, inbox page time meanwhile, step-up to saturation
5. inbox     inbox pages at 1k / 10k / 100k generated conversations (database
             crm_bench_inbox)

Prints the table, writes bench/results.json; py-spy profiles and server logs go to
var/bench/. Benchmark databases are dropped and processes stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load, profile, underload, widget
from bench.common import (
    ROOT,
    BenchError,
    RedisServer,
    Server,
    cpu_of,
    last_json_line,
    loadavg,
    machine_busy_seconds,
    raise_nofile,
    run_python,
)
from bench.db import Db, drop_database, pg_available, recreate_database
from bench.report import Figure, Report, ratio

BASELINE_APP = "bench.baseline_server:app"
PRODUCT_APP = "crm.asgi:application"
SEND_LIMITS = json.dumps({"send_message": [1_000_000, 60]})
REALTIME_DB = "crm_bench"
INBOX_DB = "crm_bench_inbox"
LOAD_DB = "crm_bench_load"
PHASES = ("baseline", "sqlite", "postgres", "load", "inbox")


@dataclass
class Plan:
    quick: bool
    latency: int
    seconds: float
    warmup: float
    conversations: int
    sockets: int
    scales: list[int]
    repeat: int
    reply_every: int
    profile_messages: int
    deflate: bool
    postgres: str
    load_conversations: int
    load_rate: float
    load_seconds: float
    load_steps: list[float]
    load_step_seconds: float
    load_pages: int
    skip: set[str] = field(default_factory=set)
    out: Path = ROOT / "bench" / "results.json"
    check: bool = False


def parse_args(argv: list[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="crm-chat benchmarks against a bare ASGI baseline."
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--latency-messages", type=int, help="sequential messages (2000)")
    parser.add_argument("--seconds", type=float, help="throughput window per run (10)")
    parser.add_argument("--conversations", type=int, help="concurrent conversations (100)")
    parser.add_argument("--sockets", type=int, help="idle visitor sockets (1000)")
    parser.add_argument("--scales", help="inbox conversation counts (1000,10000,100000)")
    parser.add_argument("--reply-every", type=int, default=5,
                        help="the agent replies to every Nth visitor message (5; 0: never)")  # fmt: skip
    parser.add_argument("--no-client-deflate", action="store_true",
                        help="clients don't offer permessage-deflate (browsers do)")  # fmt: skip
    parser.add_argument("--postgres", default=os.environ.get("CRM_BENCH_POSTGRES_URL",
                        "postgres://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server for the crm_bench* databases")  # fmt: skip
    parser.add_argument("--load-rate", type=float, default=200.0,
                        help="offered visitor messages/s in the load phase (200)")  # fmt: skip
    parser.add_argument("--load-conversations", type=int,
                        help="conversations sending in the load phase (200; --quick 50)")  # fmt: skip
    parser.add_argument("--load-seconds", type=float,
                        help="counted window of the load run (10; --quick 5)")  # fmt: skip
    parser.add_argument("--load-steps", default="200,400,800,1600",
                        help="offered rates of the step-up to saturation (200,400,800,1600)")  # fmt: skip
    parser.add_argument("--skip", default="", help=f"comma-separated phases: {', '.join(PHASES)}")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless every phase ran and every figure has a value "
        "(what CI asserts; the targets are reported, not asserted)",
    )
    opts = parser.parse_args(argv)
    quick = opts.quick
    skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
    if unknown := skip - set(PHASES) - {"profile", "widget", "memory"}:
        parser.error(f"unknown phase(s) to skip: {', '.join(sorted(unknown))}")
    if opts.load_rate <= 0 or (opts.load_conversations or 4) < 4:
        parser.error("--load-rate must be > 0 and --load-conversations at least 4 "
                     "(both transports on both workers)")  # fmt: skip
    scales = opts.scales or ("1000,10000" if quick else "1000,10000,100000")
    return Plan(
        quick=quick,
        latency=opts.latency_messages or (300 if quick else 2000),
        seconds=opts.seconds or (3.0 if quick else 10.0),
        warmup=1.0 if quick else 2.0,
        conversations=opts.conversations or 100,
        sockets=opts.sockets or (200 if quick else 1000),
        scales=[int(s) for s in scales.split(",") if s.strip()],
        repeat=5 if quick else 9,
        reply_every=opts.reply_every,
        profile_messages=200 if quick else 1000,
        deflate=not opts.no_client_deflate,
        postgres=opts.postgres,
        load_conversations=opts.load_conversations or (50 if quick else 200),
        load_rate=opts.load_rate,
        load_seconds=opts.load_seconds or (5.0 if quick else 10.0),
        load_steps=sorted(float(s) for s in opts.load_steps.split(",") if s.strip()),
        load_step_seconds=3.0 if quick else 5.0,
        load_pages=24 if quick else 40,
        skip=skip,
        out=opts.json,
        check=opts.check,
    )


def aio(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a client coroutine on uvloop when available (a lighter client, like the server)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Stack:
    """One product deployment under test: its environment, database and world."""

    key: str  # "sqlite" | "postgres"
    title: str
    env: dict[str, str]
    db: Db
    world: dict = field(default_factory=dict)
    # Pids of the rest of the stack besides the workers (Redis); PostgreSQL backends are
    # looked up each time (the pool opens connections as it needs them).
    others: list[int] = field(default_factory=list)

    def extra_cpu(self) -> Callable[[], float] | None:
        """CPU seconds of this stack's PostgreSQL backends and Redis so far, or None."""
        if not self.db.pg_url:
            return None
        return lambda: cpu_of(self.db.backend_pids() + self.others)

    def conversations(self) -> list[str]:
        return [v["conversation"] for v in self.world["visitors"]]

    def target(self, servers: list[Server], *, deflate: bool) -> load.Target:
        return load.Target(
            "product",
            [s.port for s in servers],
            key=self.world["key"],
            origin=self.world["origin"],
            cookie=self.world["cookie"],
            tokens={v["conversation"]: v["token"] for v in self.world["visitors"]},
            since=self.db.last_seqs,
            deflate=deflate,
        )


class Bench:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.report = Report()
        self.stack = ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix="crm-bench-"))
        self.logs = ROOT / "var" / "bench"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.baseline: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.failed: list[str] = []

    # ----------------------------------------------------------------- plumbing

    def product_env(self, name: str, **extra: str) -> dict[str, str]:
        data = self.tmp / name
        data.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRM_", "DJANGO_"))
            and k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}
        }
        env.update(
            DJANGO_SETTINGS_MODULE="crm.settings",
            CRM_DATA_DIR=str(data),
            CRM_PUBLIC_URL="http://127.0.0.1",
            SECRET_KEY=secrets.token_urlsafe(40),
            LOG_LEVEL="WARNING",
            # A benchmark, not an abuse test: let one visitor send as fast as it can.
            CRM_CHAT_RATE_LIMITS=SEND_LIMITS,
            **extra,
        )
        return env

    def server(self, app: str, env: dict[str, str], log: str) -> Server:
        return Server(app, env, log=self.logs / f"{log}.log")

    def prepare(self, stack: Stack, visitors: int, assign: int) -> None:
        t0 = time.perf_counter()
        run_python(["-m", "crm.cli", "manage", "migrate", "--verbosity", "0"], stack.env,
                   timeout=300, what=f"migrate ({stack.key})")  # fmt: skip
        done = run_python(
            ["-m", "bench.setup_world", "--visitors", str(visitors), "--assign", str(assign)],
            stack.env,
            timeout=600,
            what=f"setup ({stack.key})",
        )
        stack.world = json.loads(last_json_line(done.stdout))
        say(f"{stack.key}: migrated and created {visitors} visitors "
            f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip

    def phase(self, name: str, func: Callable[[], None]) -> None:
        if name in self.plan.skip:
            self.report.notes.append(f"- phase {name!r} skipped (--skip).")
            return
        t0 = time.perf_counter()
        say(f"phase {name}")
        try:
            func()
        except BenchError as exc:
            self.failed.append(name)
            self.report.notes.append(f"- phase {name!r} did not finish: {exc}")
            say(f"phase {name} failed: {exc}")
            if name == "baseline":
                raise
        except Exception as exc:
            self.failed.append(name)
            self.report.notes.append(f"- phase {name!r} crashed: {exc!r}")
            traceback.print_exc()
            if name == "baseline":
                raise
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 1)

    def run(self) -> Report:
        raise_nofile(self.plan.sockets * 2 + 1024)
        t0 = time.perf_counter()
        # How busy the machine is without us: other work competes for the same cores.
        busy0 = machine_busy_seconds()
        time.sleep(1.0)
        self.report.meta.update(
            busy_cores_before=round(machine_busy_seconds() - busy0, 2),
            loadavg_start=loadavg(),
            **_git_state(),
        )
        try:
            self.phase("baseline", self.run_baseline)
            self.phase("sqlite", self.run_sqlite)
            self.phase("postgres", self.run_postgres)
            self.phase("load", self.run_load)
            self.phase("inbox", self.run_inbox)
        finally:
            self.stack.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.report.meta.update(
            quick=self.plan.quick,
            plan={k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
                  for k, v in self.plan.__dict__.items()},
            phase_seconds=self.timings,
            loadavg_end=loadavg(),
            total_seconds=round(time.perf_counter() - t0, 1),
        )  # fmt: skip
        return self.report

    # ----------------------------------------------------------------- baseline

    def run_baseline(self) -> None:
        plan, env = self.plan, dict(os.environ)
        rooms = [f"room-{i}" for i in range(1 + plan.conversations + plan.sockets)]
        with self.server(BASELINE_APP, env, "baseline") as srv:
            target = load.Target("baseline", [srv.port], deflate=plan.deflate)
            lat = aio(load.latency(target, rooms[0], plan.latency, srv.cpu))
            tput = aio(self.throughput(target, rooms[1 : 1 + plan.conversations], [srv], None))
        memory = self.memory(BASELINE_APP, env, "baseline", lambda s, d: load.Target(
            "baseline", [s.port], deflate=d), rooms[1 + plan.conversations :])  # fmt: skip
        self.baseline = {"latency": lat, "throughput": tput, "memory": memory}
        self.report.raw["baseline"] = self.baseline
        sec = "Bare ASGI baseline (uvicorn ws=wsproto, no Django, no database)"
        add = self.report.add
        add(Figure(sec, f"delivery p50, {plan.latency} sequential", lat["p50_ms"], "ms"))
        add(Figure(sec, "delivery p99", lat["p99_ms"], "ms"))
        add(Figure(sec, "server CPU per delivered message", lat["cpu_us_per_msg"], "us"))
        add(Figure(sec, f"messages/s, {plan.conversations} pairs", tput["acked_per_s"], "/s",
                   note=f"(server {tput['server_cpu_cores']:.2f} + client "
                        f"{tput['client_cpu_cores']:.2f} cores)"))  # fmt: skip
        for variant, label in self._memory_variants():
            add(Figure(sec, f"RSS per idle socket, {label}",
                       memory[variant]["kb_per_socket"], "KB"))  # fmt: skip

    def _memory_variants(self) -> list[tuple[str, str]]:
        both = [("deflate", "client offers deflate"), ("plain", "client without deflate")]
        return both if self.plan.deflate else both[1:]

    def memory(
        self,
        app: str,
        env: dict[str, str],
        log: str,
        make_target: Callable[[Server, bool], load.Target],
        conversations: list[str],
    ) -> dict:
        """Idle sockets against a fresh server per variant (freed memory would be reused)."""
        out = {}
        for variant, _ in self._memory_variants():
            with self.server(app, env, f"{log}-memory-{variant}") as srv:
                target = make_target(srv, variant == "deflate")
                out[variant] = aio(load.idle_sockets(target, conversations, srv.rss_kb))
        return out

    async def throughput(
        self,
        target: load.Target,
        conversations: list[str],
        servers: list[Server],
        stack: Stack | None,
    ) -> dict:
        return await load.throughput(
            target,
            conversations,
            duration=self.plan.seconds,
            warmup=self.plan.warmup,
            reply_every=self.plan.reply_every,
            cpu=lambda: sum(s.cpu() for s in servers),
            stored=stack.db.count_messages if stack else None,
            extra_cpu=stack.extra_cpu() if stack else None,
        )

    # ------------------------------------------------------------------ product

    def run_sqlite(self) -> None:
        env = self.product_env("sqlite")
        stack = Stack("sqlite", "Product: SQLite, events in the process, 1 worker", env,
                      Db(sqlite_path=Path(env["CRM_DATA_DIR"]) / "crm.sqlite3"))  # fmt: skip
        self.stack.callback(stack.db.close)
        self.run_product(stack, workers=(1,))

    def run_postgres(self) -> None:
        why = pg_available(self.plan.postgres)
        if why:
            raise BenchError(f"PostgreSQL at {self.plan.postgres} is not reachable: {why}")
        redis = RedisServer()
        self.stack.callback(redis.stop)
        url = recreate_database(self.plan.postgres, REALTIME_DB)
        self.stack.callback(drop_database, self.plan.postgres, REALTIME_DB)
        env = self.product_env("postgres", DATABASE_URL=url, REDIS_URL=redis.url(14))
        stack = Stack("postgres", "Product: PostgreSQL + Redis (events over Redis pub/sub)", env,
                      Db(pg_url=url), others=[redis.proc.pid])  # fmt: skip
        self.stack.callback(stack.db.close)
        self.run_product(stack, workers=(1, 2))

    def run_product(self, stack: Stack, workers: tuple[int, ...]) -> None:
        plan = self.plan
        n_conv = plan.conversations
        self.prepare(stack, visitors=1 + n_conv + plan.sockets, assign=1 + n_conv)
        convs = stack.conversations()
        lat_conv, tput_convs, idle_convs = convs[0], convs[1 : 1 + n_conv], convs[1 + n_conv :]
        raw: dict[str, Any] = {}
        self.report.raw[stack.key] = raw
        with self.server(PRODUCT_APP, stack.env, f"{stack.key}-1") as srv:
            target = stack.target([srv], deflate=plan.deflate)
            if stack.key == "sqlite" and "widget" not in plan.skip:
                raw["widget"] = widget.measure(srv.port, stack.world["key"])
            say(f"{stack.key}: latency, {plan.latency} sequential messages")
            stored0 = stack.db.count_messages()
            raw["latency"] = aio(load.latency(target, lat_conv, plan.latency, srv.cpu,
                                              extra_cpu=stack.extra_cpu()))  # fmt: skip
            # Warm-up messages are stored too; CPU was measured over the counted ones.
            raw["latency"]["stored"] = stack.db.count_messages() - stored0
            say(f"{stack.key}: throughput, {n_conv} conversations, {plan.seconds:.0f} s")
            raw["throughput_1"] = aio(self.throughput(target, tput_convs, [srv], stack))
            if "profile" not in plan.skip:
                raw["profile"] = self.profile(stack, srv, target, lat_conv)
        if 2 in workers:
            say(f"{stack.key}: throughput with 2 workers")
            with (
                self.server(PRODUCT_APP, stack.env, f"{stack.key}-2a") as a,
                self.server(PRODUCT_APP, stack.env, f"{stack.key}-2b") as b,
            ):
                target = stack.target([a, b], deflate=plan.deflate)
                raw["throughput_2"] = aio(self.throughput(target, tput_convs, [a, b], stack))
        if "memory" not in plan.skip:
            say(f"{stack.key}: {plan.sockets} idle visitor sockets")
            raw["memory"] = self.memory(PRODUCT_APP, stack.env, f"{stack.key}-memory",
                                        lambda s, d: stack.target([s], deflate=d), idle_convs)  # fmt: skip
        self.product_figures(stack, raw)

    def profile(self, stack: Stack, srv: Server, target: load.Target, conversation: str) -> dict:
        if profile.available() is None:
            self.report.notes.append("- profile skipped: py-spy is not installed.")
            return {}
        say(f"{stack.key}: profiling {self.plan.profile_messages} deliveries with py-spy")
        out = self.logs / f"profile-{stack.key}.txt"
        out.unlink(missing_ok=True)
        before = stack.db.count_messages()
        spy = profile.Profiler(srv.pid, out)
        try:
            time.sleep(1.0)  # let py-spy attach
            measured = aio(load.latency(target, conversation, self.plan.profile_messages,
                                        srv.cpu, warmup=0))  # fmt: skip
        finally:
            spy.stop()
        summary = profile.summarize(out, messages=stack.db.count_messages() - before)
        summary["raw_file"] = str(out.relative_to(ROOT))
        summary["measured_cpu_us_per_msg"] = measured["cpu_us_per_msg"]
        return summary

    def product_figures(self, stack: Stack, raw: dict) -> None:
        plan, base, add = self.plan, self.baseline, self.report.add
        sec = stack.title
        lat, blat = raw["latency"], base["latency"]
        add(Figure(sec, "delivery p50, visitor -> agent, persisted", lat["p50_ms"], "ms",
                   blat["p50_ms"], "bare", ratio(lat["p50_ms"], blat["p50_ms"])))  # fmt: skip
        r = ratio(lat["p99_ms"], blat["p99_ms"])
        add(Figure(sec, "delivery p99", lat["p99_ms"], "ms", blat["p99_ms"], "bare", r,
                   "<= 5x bare", r is not None and r <= 5))  # fmt: skip
        if lat["stored"] < lat["messages"]:
            self.report.notes.append(
                f"- {stack.key}: only {lat['stored']} of {lat['messages']} latency messages "
                "were stored."
            )
        cpu = lat["cpu_us_per_msg"]
        r = ratio(cpu, blat["cpu_us_per_msg"])
        add(Figure(sec, "server CPU per persisted delivered message", cpu, "us",
                   blat["cpu_us_per_msg"], "bare", r, "<= 10x bare", r is not None and r <= 10))  # fmt: skip
        if stack.key == "postgres":
            whole = cpu + lat["db_redis_cpu_s"] / lat["messages"] * 1e6
            add(Figure(sec, "  same, plus PostgreSQL backends + Redis", whole, "us",
                       blat["cpu_us_per_msg"], "bare", ratio(whole, blat["cpu_us_per_msg"])))  # fmt: skip
        t1, bt = raw["throughput_1"], base["throughput"]
        add(Figure(sec, f"persisted messages/s, 1 worker, {plan.conversations} conversations",
                   t1["stored_per_s"], "/s", bt["acked_per_s"], "bare",
                   ratio(t1["stored_per_s"], bt["acked_per_s"]), ">= 1,000/s",
                   t1["stored_per_s"] >= 1000,
                   note=f"(server {t1['server_cpu_cores']:.2f} cores{self._db_cores(t1)})"))  # fmt: skip
        add(Figure(sec, "  agent socket live deliveries/s (same run)",
                   t1["agent_delivered_per_s"], "/s",
                   note=f"({t1['undelivered_to_agent']} of {t1['visitor_sent']} never "
                        "delivered live)"))  # fmt: skip
        if "throughput_2" in raw:
            t2 = raw["throughput_2"]
            r = ratio(t2["stored_per_s"], t1["stored_per_s"])
            add(Figure(sec, "persisted messages/s, 2 workers", t2["stored_per_s"], "/s",
                       t1["stored_per_s"], "1 worker", r, ">= 1.6x 1 worker",
                       r is not None and r >= 1.6,
                       note=f"(servers {t2['server_cpu_cores']:.2f} cores{self._db_cores(t2)})"))  # fmt: skip
        if stack.key == "postgres":
            self.scaling_figures(sec, t1, raw.get("throughput_2"))
        for variant, label in self._memory_variants():
            if "memory" not in raw:
                break
            kb, bkb = (
                raw["memory"][variant]["kb_per_socket"],
                base["memory"][variant]["kb_per_socket"],
            )
            add(Figure(sec, f"RSS per idle visitor socket, {label}", kb, "KB", bkb, "bare",
                       ratio(kb, bkb), "<= 30 KB", kb <= 30))  # fmt: skip
        if "widget" in raw:
            self.widget_figures(raw["widget"])

    def scaling_figures(self, sec: str, t1: dict, t2: dict | None) -> None:
        """Persisted messages per worker-CPU-second: what one core buys, whatever the
        cores the load generator, PostgreSQL and Redis took (bench/README.md, "Scaling")."""
        add, e1 = self.report.add, t1["stored_per_server_cpu_s"]
        add(Figure(sec, "persisted messages per worker-CPU-second, 1 worker", e1, "/CPU-s",
                   note=f"({t1['server_cpu_s']:.2f} CPU-s in {t1['window_s']:.1f} s)"))  # fmt: skip
        if t2 is None:
            return
        e2 = t2["stored_per_server_cpu_s"]
        r = ratio(e2, e1)
        add(Figure(sec, "persisted messages per worker-CPU-second, 2 workers", e2, "/CPU-s",
                   e1, "1 worker", r, ">= 0.9x 1 worker", r is not None and r >= 0.9,
                   note=f"({t2['server_cpu_s']:.2f} CPU-s in {t2['window_s']:.1f} s)"))  # fmt: skip

    @staticmethod
    def _db_cores(t: dict) -> str:
        return f", db+redis {t['db_redis_cpu_cores']:.2f}" if t.get("db_redis_cpu_cores") else ""

    def widget_figures(self, w: dict) -> None:
        sec, a, add = "Widget weight (gzip -9)", widget.ANCHORS, self.report.add
        add(Figure(sec, "loader /p/chat/<key>.js", w["loader_gz"], "B", a["rocketchat_loader"],
                   "Rocket.Chat", ratio(w["loader_gz"], a["rocketchat_loader"]), "<= 1 KB",
                   w["loader_gz"] <= 1024))  # fmt: skip
        parts = " + ".join(f"{k} {v}" for k, v in w["parts_gz"].items())
        add(Figure(sec, "first open: iframe HTML + stream.js + widget.js + widget.css", w["first_open_gz"], "B",
                   a["rocketchat_iframe"], "Rocket.Chat",
                   ratio(w["first_open_gz"], a["rocketchat_iframe"]), "<= 12 KB",
                   w["first_open_gz"] <= 12 * 1024, note=f"({parts})"))  # fmt: skip
        add(Figure(sec, "  first open vs Papercups widget", w["first_open_gz"], "B",
                   a["papercups_widget"], "Papercups",
                   ratio(w["first_open_gz"], a["papercups_widget"])))  # fmt: skip

    # --------------------------------------------------------------------- load

    def run_load(self) -> None:
        why = pg_available(self.plan.postgres)
        if why:
            raise BenchError(f"PostgreSQL at {self.plan.postgres} is not reachable: {why}")
        n = self.plan.load_conversations
        with ExitStack() as local:  # this phase's Redis and database go when it ends
            redis = RedisServer()
            local.callback(redis.stop)
            url = recreate_database(self.plan.postgres, LOAD_DB)
            local.callback(drop_database, self.plan.postgres, LOAD_DB)
            env = self.product_env("load", DATABASE_URL=url, REDIS_URL=redis.url(14))
            stack = Stack("load", "Under load", env, Db(pg_url=url), others=[redis.proc.pid])
            local.callback(stack.db.close)
            self.prepare(stack, visitors=n, assign=n)
            logs = [self.logs / f"load-{w}.log" for w in ("a", "b")]
            offsets = [p.stat().st_size if p.exists() else 0 for p in logs]
            servers = [local.enter_context(self.server(PRODUCT_APP, env, p.stem)) for p in logs]
            target = stack.target(servers, deflate=self.plan.deflate)
            raw = aio(underload.measure(self._load_setup(stack, servers), target,
                                        stack.conversations()))  # fmt: skip
        raw["server_log_problems"] = _log_problems(logs, offsets)
        self.report.raw["load"] = raw
        self.load_figures(raw)

    def _load_setup(self, stack: Stack, servers: list[Server]) -> underload.Setup:
        plan = self.plan
        return underload.Setup(
            rate=plan.load_rate,
            seconds=plan.load_seconds,
            warmup=plan.warmup,
            steps=plan.load_steps,
            step_seconds=plan.load_step_seconds,
            step_budget=20.0 if plan.quick else 90.0,
            quiesce=15.0 if plan.quick else 30.0,
            pages=plan.load_pages,
            page_port=servers[0].port,
            cookie=stack.world["cookie"],
            server_cpu=lambda: sum(s.cpu() for s in servers),
            extra_cpu=stack.extra_cpu() or (lambda: 0.0),
            persisted=stack.db.count_client_ids,
            quiet=stack.db.count_messages,
            say=say,
        )

    def load_figures(self, raw: dict) -> None:
        m, page, add = raw["main"], raw["inbox_page"], self.report.add
        sec = (f"Under load: 2 workers, PostgreSQL + Redis, {raw['conversations']} conversations "
               f"(half HTTP, half WebSocket), {m['offered_per_s']:.0f} msgs/s offered, "
               "agents on the other worker")  # fmt: skip
        p99 = m["delivery_p99_ms"]
        # Messages that never arrived count at the time waited: the value is then a floor.
        floor = f"(at least: {m['never_arrived']} never arrived)" if m["never_arrived"] else ""
        add(Figure(sec, "cross-worker delivery p50, from the sender's ack", m["delivery_p50_ms"],
                   "ms", note=floor))  # fmt: skip
        add(Figure(sec, "cross-worker delivery p99, from the sender's ack", p99, "ms",
                   target="<= 100 ms", ok=p99 is not None and p99 <= underload.P99_TARGET_MS,
                   note=floor))  # fmt: skip
        add(Figure(sec, "  same, from send start: p50", m["delivery_from_start_p50_ms"], "ms",
                   note=floor))  # fmt: skip
        add(Figure(sec, "  same, from send start: p99", m["delivery_from_start_p99_ms"], "ms",
                   note=floor))  # fmt: skip
        add(Figure(sec, "acknowledged msgs/s", m["acked_per_s"], "/s",
                   note=f"({m['acked']} of {m['offered']} acked, {m['persisted']} persisted; "
                        f"send -> ack p99 {_ms(m['ack_p99_ms'])})"))  # fmt: skip
        add(Figure(sec, "never delivered live within 10 s", m["undelivered_10s"], "msgs",
                   note=f"(of {m['acked']} acked; {m['never_arrived']} never arrived)"))  # fmt: skip
        slow = f"(at least: {page['timeouts']} timed out at 10 s)" if page["timeouts"] else ""
        for pct in ("p50", "p99"):
            ms = page[f"{pct}_ms"]
            add(Figure(sec, f"inbox page /crm/chat/ {pct}, {len(page['times_ms'])} requests, "
                       "worker 1", ms, "ms", target="<= 50 ms",
                       ok=ms is not None and ms <= underload.PAGE_TARGET_MS, note=slow))  # fmt: skip
        self.step_figures(sec, raw)
        self.load_notes(raw)

    def step_figures(self, sec: str, raw: dict) -> None:
        add, sat, above = self.report.add, raw["saturation_per_s"], raw["first_failed_per_s"]
        add(Figure(sec, "saturation: highest offered rate that held", sat, "/s",
                   target=">= 200/s", ok=sat >= 200,
                   note="(delivery p99 <= 100 ms, all acked, persisted, delivered"
                        + (f"; {above:g}/s did not)" if above else ")")))  # fmt: skip
        add(Figure(sec, "max acknowledged msgs/s observed", raw["max_acked_per_s"], "/s"))
        for s in sorted(raw["steps"], key=lambda s: s["offered_per_s"]):
            add(Figure(sec, f"  step {s['offered_per_s']:g} msgs/s offered: delivery p99",
                       s["delivery_p99_ms"], "ms", target="<= 100 ms, none lost", ok=s["held"],
                       note=f"(acked {s['acked_per_s']:.0f}/s; {s['offered'] - s['acked']} "
                            f"not acked, {s['undelivered_10s']} undelivered)"))  # fmt: skip

    def load_notes(self, raw: dict) -> None:
        """What went wrong in the product under load, precisely (counts by kind)."""
        notes = self.report.notes
        runs = [raw["main"], *(s for s in raw["steps"] if s is not raw["main"])]
        for s in runs:
            if s["errors"]:
                notes.append(f"- load at {s['offered_per_s']:g} msgs/s: sends failed: "
                             f"{s['errors']}")  # fmt: skip
            if not s["went_quiet"]:
                notes.append(f"- load at {s['offered_per_s']:g} msgs/s: the workers were still "
                             f"storing or delivering {s['quiesce_s']:.0f} s later; the next "
                             "step started on top of that.")  # fmt: skip
            if (s["scheduler_lag_p99_ms"] or 0) > 20:
                notes.append(f"- load at {s['offered_per_s']:g} msgs/s: the load generator fell "
                             f"behind its schedule (p99 {s['scheduler_lag_p99_ms']:.0f} ms late).")  # fmt: skip
        if any(raw["sockets_closed_by_server"].values()):
            notes.append(f"- load: sockets the workers closed during the phase: "
                         f"{raw['sockets_closed_by_server']}")  # fmt: skip
        if raw["saturation_note"]:
            notes.append(f"- load: saturation is a lower bound: {raw['saturation_note']}.")
        bad = {k: v for k, v in raw["inbox_page"]["statuses"].items() if k != "200"}
        bad.update(
            {f"warm-up {k}": v for k, v in raw["inbox_page"]["warmup"].items() if k != "200"}
        )
        if bad:
            notes.append(f"- load: inbox page answers other than 200: {bad}")
        logs = raw["server_log_problems"]
        if logs["lines"]:
            kinds = "; ".join(f"{n} x {k}" for k, n in list(logs["kinds"].items())[:4])
            notes.append(f"- load: the workers logged {logs['lines']} error lines "
                         f"({logs['tracebacks']} tracebacks): {kinds}; see var/bench/load-*.log")  # fmt: skip

    # -------------------------------------------------------------------- inbox

    def run_inbox(self) -> None:
        why = pg_available(self.plan.postgres)
        if why:
            raise BenchError(f"PostgreSQL at {self.plan.postgres} is not reachable: {why}")
        url = recreate_database(self.plan.postgres, INBOX_DB)
        self.stack.callback(drop_database, self.plan.postgres, INBOX_DB)
        env = self.product_env("inbox", DATABASE_URL=url)
        run_python(["-m", "crm.cli", "manage", "migrate", "--verbosity", "0"], env,
                   timeout=300, what="migrate (inbox)")  # fmt: skip
        scales = ",".join(str(s) for s in self.plan.scales)
        done = run_python(
            ["-m", "bench.inbox", "--scales", scales, "--repeat", str(self.plan.repeat)],
            env,
            timeout=900,
            what="inbox benchmark",
        )
        for line in done.stderr.strip().splitlines():
            if line.startswith(("inbox:", "generate:")):
                say(line)
        data = json.loads(last_json_line(done.stdout))
        self.report.raw["inbox"] = data
        rows = data["scales"]
        first = rows[0]
        sec = "Inbox server time (PostgreSQL, Owner, median, Django test client in-process)"
        pages = (
            ("list", "list /crm/chat/"),
            ("conversation", "conversation page"),
            ("search_none", "search: a word nothing has"),
            ("search_word", "search: a word of a recent message"),
            ("search_chat_id", "search: a chat id"),
        )
        for page, label in pages:
            for row in rows:
                limit = 50 if page.startswith("search") else 30
                ms, base_ms = row[page]["median_ms"], first[page]["median_ms"]
                self.report.add(
                    Figure(
                        sec,
                        f"{label} @ {row['conversations']:,} conversations",
                        ms,
                        "ms",
                        base_ms,
                        f"@{first['conversations']:,}",
                        ratio(ms, base_ms),
                        f"<= {limit} ms, flat",
                        ms <= limit,
                        note=f"({row[page]['queries']} queries)",
                    )
                )
        if not data.get("valid", True):
            self.report.notes.append(f"- generated data failed validation: {data.get('problems')}")


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    os.chdir(ROOT)
    bench = Bench(plan)
    try:
        report = bench.run()
    except KeyboardInterrupt:
        say("interrupted; stopped every process and dropped the benchmark databases")
        return 130
    except Exception as exc:
        say(f"failed: {exc}")
        return 1
    report.notes.insert(0, _footnote(plan))
    busy = report.meta.get("busy_cores_before", 0)
    if busy > 0.3:
        report.notes.insert(1, f"- other work was using {busy:.2f} cores when the run began: it "
                               "competes with the servers for the machine's cores.")  # fmt: skip
    print()
    print(report.table())
    with suppress(OSError):
        report.write(plan.out)
        say(f"wrote {plan.out.relative_to(ROOT) if plan.out.is_relative_to(ROOT) else plan.out}"
            f" ({report.meta['total_seconds']:.0f} s)")  # fmt: skip
    if plan.check:
        return _check(bench, report)
    return 0


def _check(bench: Bench, report: Report) -> int:
    """CI keeps the harness working: every phase ran and produced every figure."""
    missing = [f"{f.section}: {f.label}" for f in report.figures if f.value is None]
    problems = [f"phase {name} failed" for name in bench.failed] + [
        f"no value for {label}" for label in missing
    ]
    if not report.figures:
        problems.append("no figures at all")
    for problem in problems:
        say(f"check: {problem}")
    say("check: every figure produced" if not problems else "check: FAILED")
    return 1 if problems else 0


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|Exit)\w*: ")


def _log_problems(logs: list[Path], offsets: list[int]) -> dict:
    """Error lines the workers logged during this run (the logs are appended to), counted
    by kind: ERROR records (timestamp dropped, paths shortened) and exceptions raised."""
    kinds: Counter[str] = Counter()
    tracebacks = 0
    for path, offset in zip(logs, offsets, strict=True):
        with suppress(OSError), path.open("rb") as f:
            f.seek(offset)
            for line in f.read(20_000_000).decode(errors="replace").splitlines():
                tracebacks += line.startswith("Traceback")
                if "ERROR" in line or _EXCEPTION.match(line):
                    text = re.sub(r"/p/chat/\S+", "/p/chat/…", _STAMP.sub("", line))
                    kinds[text.strip()[:140]] += 1
    return {"lines": sum(kinds.values()), "tracebacks": tracebacks,
            "kinds": dict(kinds.most_common(10))}  # fmt: skip


def _git_state() -> dict:
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.rstrip("\n")

    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_uncommitted": changed}


def _footnote(plan: Plan) -> str:
    return (
        f"Notes: {'--quick run; ' if plan.quick else ''}clients "
        f"{'offer' if plan.deflate else 'do not offer'} permessage-deflate "
        "(browsers do); the load generator shares the machine's cores with the servers; "
        "server CPU is the uvicorn worker processes only (PostgreSQL and Redis excluded "
        "unless said). Details: bench/README.md; raw numbers: bench/results.json."
    )
