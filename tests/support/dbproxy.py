"""A loopback TCP proxy in front of PostgreSQL that a test can cut and restore.

Stopping the machine's PostgreSQL would disturb everything else that uses it, so
worker processes reach the database through this proxy instead, and a test makes
the database "go away" by cutting the proxy: every open connection is dropped at
once (like a crashed or restarted server) and new ones are closed as soon as they
are accepted, until the test restores it.

The proxy runs in its own process (``python -m tests.support.dbproxy``) so a busy
test process can't slow the database path down. It listens on 127.0.0.1 only,
accepts at most ``--max-connections`` at a time, and ends by itself after
``--lifetime`` seconds or when its controlling process goes away (EOF on stdin).
The controller speaks one line at a time on stdin (``cut``, ``resume``,
``stats``, ``quit``) and reads one line of JSON back for each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


class _Half(asyncio.Protocol):
    """One side of a proxied connection: what it reads goes to the other side.

    Protocol callbacks (no stream tasks) keep the added latency per database round
    trip small; a full write buffer on one side pauses reading on the other, so a
    connection's memory stays bounded.
    """

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.early: list[bytes] = []  # read before the other side was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is no subclass)
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)
        elif sum(map(len, self.early)) < 1 << 20:
            self.early.append(data)  # (a startup packet; bounded all the same)
        else:
            self.abort()

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.halves.discard(self)
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()  # the other direction ends too

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # a reset, not a polite close: the server is gone


class _Client(_Half):
    """The accepted side: connects upstream, or refuses while the proxy is cut."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        proxy = self.proxy
        if proxy.down or len(proxy.halves) >= 2 * proxy.max_connections:
            proxy.stats["refused"] += 1
            self.abort()
            return
        self.transport.pause_reading()  # type: ignore[union-attr]  # until upstream is there
        # (uvloop may still deliver a first read: data_received keeps it for later)
        proxy.halves.add(self)
        asyncio.get_running_loop().create_task(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        proxy = self.proxy
        try:
            _, upstream = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: _Half(proxy), LOOPBACK, proxy.upstream_port
                ),
                5,
            )
        except (OSError, TimeoutError):
            proxy.stats["refused"] += 1
            self.abort()
            return
        if proxy.down or self.transport is None or self.transport.is_closing():
            upstream.abort()  # cut (or gone) while we were connecting
            self.abort()
            return
        self.other, upstream.other = upstream, self
        proxy.halves.add(upstream)
        proxy.stats["accepted"] += 1
        for data in self.early:
            upstream.transport.write(data)  # type: ignore[union-attr]
        self.early.clear()
        self.transport.resume_reading()


class TcpProxy:
    """Forward ``LOOPBACK:listen_port`` to ``LOOPBACK:upstream_port`` until cut."""

    def __init__(self, listen_port: int, upstream_port: int, *, max_connections: int) -> None:
        self.listen_port, self.upstream_port = listen_port, upstream_port
        self.max_connections = max_connections
        self.down = False
        self.halves: set[_Half] = set()
        self.stats = {"accepted": 0, "refused": 0, "dropped": 0, "cuts": 0}

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until ``resume``."""
        self.down = True
        self.stats["cuts"] += 1
        self.stats["dropped"] += sum(isinstance(h, _Client) for h in self.halves)
        for half in list(self.halves):
            half.abort()
        self.halves.clear()

    def resume(self) -> None:
        self.down = False


async def _serve(args: argparse.Namespace) -> None:
    proxy = TcpProxy(args.listen, args.upstream, max_connections=args.max_connections)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(proxy), LOOPBACK, args.listen, reuse_address=True
    )
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    _reply({"ready": args.listen})
    deadline = time.monotonic() + args.lifetime
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(commands.readline(), min(left, 1.0))
            except TimeoutError:
                continue
            command = line.decode().strip()
            if command in {"", "quit"}:  # EOF: whoever controlled us is gone
                break
            if command == "cut":
                proxy.cut()
            elif command == "resume":
                proxy.resume()
            elif command != "stats":
                _reply({"error": f"unknown command {command!r}"})
                continue
            _reply({"down": proxy.down, "open": len(proxy.halves) // 2, **proxy.stats})
    finally:
        server.close()
        proxy.cut()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class DbProxy:
    """The controlling side: start the proxy process, cut and restore the database."""

    def __init__(self, upstream_port: int, *, lifetime: float = 600) -> None:
        from tests.conftest import free_port

        self.upstream_port, self.lifetime = upstream_port, lifetime
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> DbProxy:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.dbproxy", "--listen", str(self.port),
             "--upstream", str(self.upstream_port), "--lifetime", str(self.lifetime)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True,
        )  # fmt: skip
        assert self._read(15).get("ready") == self.port
        return self

    def command(self, command: str, timeout: float = 5) -> dict:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def cut(self) -> dict:
        return self.command("cut")

    def resume(self) -> dict:
        return self.command("resume")

    def stats(self) -> dict:
        return self.command("stats")

    def _read(self, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"the database proxy did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the database proxy exited ({self.proc.poll()})")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()  # type: ignore[union-attr]  # EOF: it exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=600)
    parser.add_argument("--max-connections", type=int, default=256)
    args = parser.parse_args(argv)
    try:  # uvloop (uvicorn's own loop) cuts the latency the proxy adds to each round trip
        import uvloop
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))


if __name__ == "__main__":
    main()
