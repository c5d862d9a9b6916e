"""Shared plumbing of the benchmarks: server processes, /proc readers, statistics.

Everything listens on 127.0.0.1 only, every wait is bounded, and every process a
benchmark starts is stopped by the same benchmark (``Server.stop``).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A benchmark could not run; the message says why in one sentence."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"the process for port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on {HOST}:{port} after {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after it are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def cpu_of(pids: list[int]) -> float:
    """Summed CPU seconds of processes that still exist (others count as 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def rss_kb(pid: int) -> int:
    """Resident set size in KiB, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy (not idle or waiting on I/O), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile(needed: int) -> int:
    """Raise this process's soft open-files limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def uvicorn_command(app: str, port: int) -> list[str]:
    """The one server command line for the baseline and the product (same uvicorn, same ws)."""
    return [
        PYTHON, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--ws", "wsproto",
        "--ws-per-message-deflate", "false", "--lifespan", "off", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


class Server:
    """One uvicorn worker process on its own loopback port."""

    def __init__(self, app: str, env: dict[str, str], *, log: Path | None = None) -> None:
        self.port = free_port()
        self.log_path = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self._log = out
        self.proc = subprocess.Popen(
            uvicorn_command(app, self.port), env=env, cwd=ROOT, stdout=out, stderr=out
        )
        try:
            wait_port(self.port, self.proc)
        except BenchError:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not subprocess.DEVNULL:
            with suppress(OSError):
                self._log.close()  # type: ignore[union-attr]

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer:
    """A private redis-server on a free loopback port: the benchmark disturbs no other Redis."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not installed")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly",
             "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port(self.port, self.proc)
        except BenchError:
            self.stop()
            raise

    def url(self, db: int = 14) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def run_python(
    args: list[str], env: dict[str, str], *, timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    """Run the product's Python with ``args``; raise BenchError with its stderr on failure."""
    try:
        done = subprocess.run(
            [PYTHON, *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} took longer than {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done


def last_json_line(output: str) -> str:
    """The last line of a helper's stdout that looks like JSON (helpers print it last)."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return line
    raise BenchError(f"no JSON in helper output: {output[-500:]!r}")
