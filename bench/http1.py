"""A lean HTTP/1.1 client for the load phase: one small keep-alive pool per visitor.

Why not httpx: its connection pool re-scans every queued request whenever anything
changes (httpcore's ``_assign_requests_to_connections``), so with a few hundred sends
queued behind a saturated server the load generator spent seconds of its event loop in
there and fell far behind its own schedule (py-spy showed it). Here each visitor has its
own pool of at most 6 connections, like a browser has per host: a send waits for a free
one on a semaphore, which costs nothing however many are waiting.

Framing is h11's (already installed with uvicorn). Every wait is bounded by the caller
(``asyncio.wait_for``); a cancelled or failed request closes its connection.
"""

from __future__ import annotations

import asyncio
import time

import h11

IDLE_EXPIRY = 3.0  # seconds: below uvicorn's 5 s keep-alive, so no send races its close


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.idle_since = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        """Send one request and read the whole response: (status, body)."""
        try:
            out = self.h11.send(h11.Request(method=method, target=target, headers=[
                *headers, ("Content-Length", str(len(body)))]))  # fmt: skip
            out += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
            self.writer.write(out)
            await self.writer.drain()
            return await self._response()
        except h11.ProtocolError as exc:
            raise ConnectionError(f"HTTP protocol error: {exc}") from exc

    async def _response(self) -> tuple[int, bytes]:
        status, chunks = 0, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                if not data and status == 0:
                    raise ConnectionError("the server closed the connection before answering")
                self.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection before answering")

    def reuse(self) -> bool:
        """Ready for the next request (both sides done, keep-alive)."""
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        self.idle_since = time.monotonic()
        return True

    def fresh(self) -> bool:
        return time.monotonic() - self.idle_since < IDLE_EXPIRY and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Pool:
    """At most ``size`` connections to one server for one visitor."""

    def __init__(self, host: str, port: int, size: int = 6) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Connection] = []

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        headers = [("Host", f"{self.host}:{self.port}"), *headers]
        async with self.slots:
            conn = self._idle() or await Connection.open(self.host, self.port)
            try:
                status, data = await conn.request(method, target, headers, body)
            except BaseException:
                conn.close()
                raise
            if conn.reuse():
                self.idle.append(conn)
            else:
                conn.close()
            return status, data

    def _idle(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if conn.fresh():
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
