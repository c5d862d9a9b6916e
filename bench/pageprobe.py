"""Time one HTML page of a running server, from its own process, while something else loads it.

    CRM_BENCH_COOKIE='sessionid=…' python -m bench.pageprobe --port 8000 --path /crm/chat/ \\
        --count 40 --interval 0.25 --delay 2 --deadline 30

Its own process because the load generator's event loop (and GIL) would otherwise add
its own delays to the round trip being measured. Two untimed warm-up requests first, then
it prints ``warm`` (the caller starts its load on that). The timed requests follow an
open-loop schedule over the load window (the first after ``--delay`` seconds, then one
every ``--interval``), each in its own thread on a kept-alive connection from a small
pool: a slow answer doesn't postpone the next request, so a page that takes seconds
under load still gets its few dozen samples spread over the window, as agents opening
the inbox would. Each is timed from sending it to having read the whole body; one that
takes longer than 10 s is abandoned and counts as 10 s (``timeouts``: the percentiles
are then floors). No request starts after ``--deadline`` seconds (``not_sent``). The
session cookie comes from the environment, not the command line, so it doesn't show in
the process list. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.common import HOST

TIMEOUT = 10.0  # seconds one request may take


class Page:
    """GET one path over a kept-alive connection, reconnecting when the server closed it."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.port, self.path, self.headers = port, path, {"Cookie": cookie}
        self.conn: http.client.HTTPConnection | None = None

    def get(self) -> tuple[int, int]:
        """Status and body size; one retry on a fresh connection if a kept-alive one was
        closed by the server meanwhile. Any failure drops the connection."""
        for attempt in range(2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
            try:
                self.conn.request("GET", self.path, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, len(response.read())
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                self.conn = None
                # RemoteDisconnected is a ConnectionResetError.
                stale = isinstance(exc, ConnectionResetError | BrokenPipeError)
                if attempt or not (reused and stale):
                    raise
        raise AssertionError("unreachable")

    def outcome(self) -> tuple[str, int]:
        """The status as text, or the exception's name when there was no answer."""
        try:
            status, size = self.get()
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__, 0
        return str(status), size


@dataclass
class Results:
    """What the timed requests found; threads add to it under the lock."""

    times_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    size: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str, size: int, ms: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == "200":
                self.times_ms.append(ms)
                self.size = size
            elif status == "TimeoutError":
                self.timeouts += 1
                self.times_ms.append(TIMEOUT * 1000)


def timed(pool: queue.SimpleQueue[Page], make: Page, results: Results) -> None:
    """One timed request on an idle pooled connection (or a new one)."""
    try:
        page = pool.get_nowait()
    except queue.Empty:
        page = Page(make.port, make.path, make.headers["Cookie"])
    start = time.perf_counter()
    status, size = page.outcome()
    results.add(status, size, (time.perf_counter() - start) * 1000)
    pool.put(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/crm/chat/")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    opts = parser.parse_args()
    first = Page(opts.port, opts.path, os.environ.get("CRM_BENCH_COOKIE", ""))
    warm = Counter(first.outcome()[0] for _ in range(2))
    print("warm", flush=True)  # the caller starts its load now
    pool: queue.SimpleQueue[Page] = queue.SimpleQueue()
    pool.put(first)
    results, threads = Results(), []
    t0 = time.perf_counter()
    for i in range(opts.count):
        pause = t0 + opts.delay + i * opts.interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        if time.perf_counter() - t0 > opts.deadline:
            results.add("not_sent", 0, 0.0)
            continue
        thread = threading.Thread(target=timed, args=(pool, first, results), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:  # each request gives up after TIMEOUT; the joins are bounded too
        thread.join(TIMEOUT + 5)
    with results.lock:
        print(json.dumps({"path": opts.path, "requests": opts.count,
                          "statuses": results.statuses, "timeouts": results.timeouts,
                          "warmup": warm, "bytes": results.size,
                          "times_ms": results.times_ms}))  # fmt: skip


if __name__ == "__main__":
    main()
