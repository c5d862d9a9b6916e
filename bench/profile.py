"""Sampling profile of a running server process with py-spy, summarised per message.

py-spy attaches to the uvicorn worker by pid (no change to the server), samples every
thread that is running (idle threads are left out), and writes collapsed stacks. The
summary turns sample counts into microseconds of server time per delivered message:
``samples / rate / messages``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.common import PYTHON, BenchError

RATE = 250  # samples per second

# A sample is charged to the first rule that matches, scanning from the innermost frame
# outwards; so time inside Django's SQLite backend counts as "database", not "crm code".
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("deflate (permessage-deflate)", ("wsproto/extensions.py", "zlib")),
    ("database driver + engine (execute, fetch, commit)", ("django/db/backends/",)),
    ("Django ORM (query building, SQL compile, model init)", ("django/db/",)),
    ("pydantic (event/payload models, dumps)", ("pydantic",)),
    ("orjson (frames, hub messages)", ("orjson",)),
    ("realtime hub + Redis pub/sub", ("crm/chat/realtime/hub.py", "redis/")),
    ("Django cache (rate limits, presence)", ("django/core/cache/",)),
    ("asgiref thread hops (sync_to_async / async_to_sync)", ("asgiref/",)),
    ("Channels (routing, session middleware at connect)", ("channels/",)),
    ("JSON encode/decode", ("json/",)),
    ("WebSocket protocol (uvicorn + wsproto)", ("wsproto/", "uvicorn/")),
    ("crm code (sockets, services, payloads)", ("crm/",)),
    ("Django other (signals, transactions, utils)", ("django/",)),
    ("asyncio / uvloop / threads", ("asyncio/", "uvloop", "threading.py", "concurrent/")),
]


# Innermost frames that mean "this thread is blocked, not computing": py-spy can't always
# tell (a thread parked on a lock or in uvloop's C poll looks busy), so they are counted
# apart as waiting. The thread-sensitive database thread parked in AsyncToSync (waiting
# for the event loop to run an on-commit publish) shows up here too.
IDLE_LEAVES = (
    "wait (threading.py)",
    "_worker (concurrent/futures/thread.py)",
    "run (asyncio/runners.py)",
    "run_until_future (asgiref/current_thread_executor.py)",
    "select (selectors.py)",
)
WAITING = "waiting (blocked thread, event-loop poll; not CPU)"


# The hot path by operation: inclusive sampled time (waiting included, since a blocked
# database thread is as unavailable as a busy one), matched by frame text.
OPERATIONS: list[tuple[str, str]] = [
    ("visitor send, the whole database hop (VisitorSocket._send)", "VisitorSocket._send ("),
    ("  rights re-read before the write (visitor_refusal)", "visitor_refusal (crm/chat/rights.py)"),
    ("  rate limit check (2 counters in the cache)", "check (crm/chat/ratelimit.py)"),
    ("  services.send_visitor_message", "send_visitor_message (crm/chat/services/messages.py"),
    ("    seq allocation: UPDATE ... RETURNING", "allocate_seq (crm/chat/services/store.py"),
    ("    insert ... ON CONFLICT DO NOTHING", "insert_message (crm/chat/services/store.py"),
    ("    offline auto-reply check", "auto_reply_if_offline (crm/chat/services/"),
    ("    transaction commit (Atomic.__exit__)", "Atomic.__exit__ ("),
    ("  payload for the ack (message_payload)", "message_payload ("),
    ("open a new database connection", "get_new_connection ("),
    ("agent socket: chat_event", "AgentSocket.chat_event ("),
    ("  agent visibility check (_may_see)", "AgentSocket._may_see ("),
    ("visitor socket: chat_event (its own message echoed)", "VisitorSocket.chat_event ("),
    ("hub publish (local fan-out + Redis queue)", "Hub.publish ("),
    ("hub Redis flush (pipelined PUBLISH)", "Hub._flush ("),
    ("WebSocket frame writes (WSProtocol.send)", "WSProtocol.send ("),
    ("permessage-deflate (compress/decompress)", "PerMessageDeflate."),
    ("JSON frame encode (send_json)", "send_json (crm/chat/realtime/socket.py"),
]


def available() -> str | None:
    """Path of the py-spy executable next to this Python (or on PATH), if installed."""
    here = Path(PYTHON).parent / "py-spy"
    if here.exists():
        return str(here)
    return shutil.which("py-spy")


class Profiler:
    """``py-spy record`` attached to ``pid`` until ``stop()`` (SIGINT makes it write)."""

    def __init__(self, pid: int, output: Path, *, rate: int = RATE, gil: bool = False) -> None:
        binary = available()
        if binary is None:
            raise BenchError("py-spy is not installed (pip install -e '.[test]')")
        self.output, self.rate = output, rate
        output.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--nolineno", "--threads", "--output", str(output), "--duration", "120",
             *(["--gil"] if gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        if not self.output.exists():
            raise BenchError(f"py-spy wrote no profile: {(err or '').strip()[-300:]}")


def _frame_file(frame: str) -> str:
    return frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else frame


def _short(frame: str) -> str:
    return frame.replace(" (", "  (")


def summarize(raw: Path, *, messages: int, rate: int = RATE, top: int = 15) -> dict:
    """Collapse py-spy's raw stacks into per-message costs: threads, categories, innermost
    frames (self time) and the hot path's operations (inclusive time)."""
    if messages <= 0:
        raise BenchError("no messages were delivered while profiling")
    per_sample_us = 1e6 / rate / messages
    category: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    operations: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith("thread") else "thread ?"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        if not frames:
            continue
        total += count
        threads[thread] += count
        joined = ";".join(frames)
        for label, needle in OPERATIONS:
            if needle in joined:
                operations[label] += count
        if frames[-1].endswith(IDLE_LEAVES):
            waiting += count
            category[WAITING] += count
            continue
        leaf[frames[-1]] += count
        for frame in reversed(frames):
            path = _frame_file(frame)
            name = next((n for n, keys in CATEGORIES if any(k in path for k in keys)), None)
            if name:
                category[name] += count
                break
        else:
            category["other"] += count

    def table(counter: Counter[str], n: int) -> list[dict]:
        return [
            {"frame": _short(k), "us_per_msg": round(v * per_sample_us, 1),
             "share": round(v / total, 3)}
            for k, v in counter.most_common(n)
        ]  # fmt: skip

    return {
        "samples": total,
        "rate_hz": rate,
        "messages": messages,
        "sampled_us_per_msg": round(total * per_sample_us, 1),
        "busy_us_per_msg": round((total - waiting) * per_sample_us, 1),
        "waiting_us_per_msg": round(waiting * per_sample_us, 1),
        "threads": {k: round(v * per_sample_us, 1) for k, v in threads.most_common(6)},
        "categories": table(category, len(CATEGORIES) + 1),
        "self": table(leaf, top),
        "operations": [
            {"operation": label, "us_per_msg": round(operations[label] * per_sample_us, 1)}
            for label, _ in OPERATIONS
        ],
    }
