"""The bare baseline: an ASGI WebSocket broadcast server, no Django, no database, no auth.

Served by the same uvicorn command line as the product (``--ws wsproto``), it does
the least a chat fan-out must do: parse each JSON frame, route it by room, and
write it to every socket in that room (the sender's copy doubles as its ack).
Frames: ``{"type": "join", "room": R}`` answers ``{"type": "ready"}``;
``{"type": "send", "room": R, ...}`` is broadcast to room R as it came.
"""

from __future__ import annotations

import json
from collections import defaultdict

rooms: dict[str, set] = defaultdict(set)
READY = {"type": "websocket.send", "text": '{"type":"ready"}'}


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    joined: list[str] = []
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or ""
            frame = json.loads(text)
            if frame["type"] == "join":
                rooms[frame["room"]].add(send)
                joined.append(frame["room"])
                await send(READY)
            elif frame["type"] == "send":
                out = {"type": "websocket.send", "text": text}
                for peer in list(rooms[frame["room"]]):
                    try:
                        await peer(out)
                    except Exception:  # a peer closing mid-broadcast is not our problem
                        rooms[frame["room"]].discard(peer)
    finally:
        for room in joined:
            rooms[room].discard(send)
