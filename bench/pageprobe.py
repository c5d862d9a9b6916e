"""Time one HTML page of a running server, from its own process, while something else loads it.

    CRM_BENCH_COOKIE='sessionid=…' python -m bench.pageprobe --port 8000 --path /crm/chat/ \\
        --count 40 --interval 0.25 --delay 2

Its own process because the load generator's event loop (and GIL) would otherwise add its
own delays to the round trip being measured. One keep-alive connection, like a browser
tab; two untimed warm-up requests at once, the timed ones spread over the load window
(the first after ``--delay`` seconds). Each request is timed from sending it to having
read the whole body. The session cookie comes from the environment, not the command
line, so it doesn't show in the process list. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from collections import Counter

from bench.common import HOST

TIMEOUT = 10.0  # seconds one request may take


class Page:
    """GET one path over a kept-alive connection, reconnecting when the server closed it."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.port, self.path, self.headers = port, path, {"Cookie": cookie}
        self.conn: http.client.HTTPConnection | None = None

    def get(self) -> tuple[int, int]:
        """Status and body size; one retry on a fresh connection if the old one was closed."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
            try:
                self.conn.request("GET", self.path, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, len(response.read())
            except (http.client.RemoteDisconnected, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/crm/chat/")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--delay", type=float, default=0.0)
    opts = parser.parse_args()
    page = Page(opts.port, opts.path, os.environ.get("CRM_BENCH_COOKIE", ""))
    t0 = time.perf_counter()
    for _ in range(2):
        page.get()
    times: list[float] = []
    statuses: Counter[str] = Counter()
    size = 0
    for i in range(opts.count):
        pause = t0 + opts.delay + i * opts.interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        start = time.perf_counter()
        try:
            status, size = page.get()
        except OSError as exc:
            statuses[type(exc).__name__] += 1
            continue
        statuses[str(status)] += 1
        if status == 200:
            times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"path": opts.path, "requests": opts.count, "statuses": statuses,
                      "bytes": size, "times_ms": times}))  # fmt: skip


if __name__ == "__main__":
    main()
