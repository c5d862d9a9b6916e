"""What both sockets share: lossless delivery, error frames, rights read again.

The delivery guarantee, stated once: every message committed to a conversation
reaches a following socket at least once, in seq order, and the clients drop
repeats by seq. It holds because a socket joins the conversation's live group
*before* it replays from the database everything after the client's ``since``:
whatever commits in between is in the replay, the live stream, or both. A live
event that skips ahead (another worker's commit arrived first, or the broker lost
one) triggers a replay from what this socket was already sent, which fills the
hole in order; events at or below that point are dropped. When the hub's Redis
subscription was lost and re-established, every socket reads its rights again and
replays from what it was sent (``chat.resync``), which catches the events (and the
revocations) published meanwhile. Sends are idempotent by ``client_id`` and
acknowledged with the stored seq.

Rights are not a connect-time snapshot (``crm.chat.revocation``): a socket reads
them again when a revocation event reaches it, before every write, after the hub's
Redis subscription came back, and every ``CRM_CHAT_SOCKET_RECHECK_SECONDS``; one
that lost them closes, and an agent
socket that lost one conversation stops following it (a ``revoked`` frame).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError

from crm.chat import selectors
from crm.chat.models import ChatConversation
from crm.chat.payloads import MessageJSON, message_payloads
from crm.chat.realtime.db import in_db
from crm.chat.realtime.socket import StopSocket, WebSocketHandler
from crm.conf import crm_settings, public_url

logger = logging.getLogger(__name__)

REPLAY_LIMIT = 1000


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def own_origins(scope: Mapping[str, Any]) -> set[str]:
    """The CRM's own origins: its public URL and the Host this socket came in on."""
    host = header(scope, b"host") or ""
    secure = scope.get("scheme") in {"wss", "https"}
    own = {public_url()}
    if host:
        own.add(f"{'https' if secure else 'http'}://{host}")
    return own


def uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except (TypeError, ValueError):
        return None


class Revoked(Exception):
    """Raised inside a database hop: the socket lost the right it was about to use."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code, self.code, self.message = close_code, code, message


def error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return getattr(exc, "message", str(exc))


class ChatSocket(WebSocketHandler):
    """Shared plumbing: refusal, rights read again, event forwarding, replay."""

    sees_internal = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Highest message seq this socket has delivered, per conversation it follows.
        self.delivered: dict[str, int] = {}
        # Set once the server refused the socket: nothing more is read or forwarded.
        self.refused = False
        self.recheck_timer: asyncio.TimerHandle | None = None

    async def refuse(self, close_code: int, code: str, message: str) -> None:
        if self.refused:
            return
        self.refused = True
        logger.warning("chat socket refused (%s): %s %s", code, self.scope.get("path"), message)
        await self.send_error(code, message)
        await self.close(code=close_code)

    # ------------------------------------------------------------ rights, again

    async def recheck(self, *, ended: bool = False) -> bool:
        """Read this socket's rights again; close or narrow it if they shrank.

        Returns whether the socket is still open. ``ended`` means the right is
        gone whatever the database says yet (a logout in progress).
        """
        raise NotImplementedError

    async def chat_recheck(self, message: Mapping[str, Any]) -> None:
        """A revocation event (``crm.chat.revocation``) or the periodic tick reached
        this socket; handled in turn with frames and events, never concurrently."""
        if self.refused:
            return
        try:
            await self.recheck(ended=bool(message.get("ended")))
        except StopSocket:
            raise
        except Exception:
            # A database outage must not end the socket (nor widen access: the
            # next write re-checks too, and fails while the database is down).
            logger.exception("socket recheck failed: %s", self.scope.get("path"))

    def start_rechecks(self) -> None:
        """Re-check periodically: the second line when a revocation event is lost.

        A timer, not a task per socket: each tick queues a ``chat.recheck`` like a
        revocation event would, so it runs in turn with the socket's frames.
        """
        if self.recheck_timer is None:
            interval = float(crm_settings.CRM_CHAT_SOCKET_RECHECK_SECONDS)
            # Jittered, so sockets opened together don't all query at the same instant.
            self._schedule_recheck(interval * random.uniform(0.5, 1.0))

    def _schedule_recheck(self, delay: float) -> None:
        self.recheck_timer = asyncio.get_running_loop().call_later(delay, self._recheck_tick)

    def _recheck_tick(self) -> None:
        if self.refused or self.closed:
            return
        self.deliver({"type": "chat.recheck", "reason": "periodic"})
        self._schedule_recheck(float(crm_settings.CRM_CHAT_SOCKET_RECHECK_SECONDS))

    def stop_rechecks(self) -> None:
        if self.recheck_timer is not None:
            self.recheck_timer.cancel()
            self.recheck_timer = None

    def followed(self) -> list[ChatConversation]:
        """The conversations whose messages this socket forwards by seq."""
        return []

    async def chat_resync(self, message: Mapping[str, Any]) -> None:
        """The hub lost its Redis subscription for a while: catch up from the database.

        Revocation events published meanwhile are lost too, so rights are read again
        first; a socket that lost them closes (or stops following) before replaying.
        """
        await self.chat_recheck({"reason": "resync"})
        if self.refused:
            return
        for conversation in self.followed():
            since = self.delivered.get(str(conversation.external_id), 0)
            await self.replay(conversation, since, internal=self.sees_internal)

    async def refuse_revoked(self, exc: Revoked) -> None:
        await self.refuse(exc.close_code, exc.code, exc.message)

    async def replay(self, conversation: ChatConversation, since: int, *, internal: bool) -> None:
        """Send every message after ``since``, in seq order.

        Called after joining the live group, so together with the live stream the
        client gets every message at least once, and drops repeats by seq.
        """
        payloads, last_seq = await in_db(_replay_payloads, conversation, since, internal)
        conv_id = str(conversation.external_id)
        for payload in payloads:
            await self.send_json(
                {
                    "type": "message",
                    "conversation": conv_id,
                    "seq": payload["seq"],
                    "message": payload,
                }
            )
        # Everything up to here is now known to the client, including seqs it can't see
        # (internal notes), so it won't ask again for them. Rows committed after
        # last_seq was read can be in the replay too: count them as delivered, or
        # their live events (still on the way) would be sent a second time.
        if len(payloads) == REPLAY_LIMIT:
            up_to = payloads[-1]["seq"]
        else:
            up_to = max(last_seq, payloads[-1]["seq"] if payloads else 0)
        self.delivered[conv_id] = max(self.delivered.get(conv_id, 0), up_to)
        await self.send_json({"type": "synced", "conversation": conv_id, "up_to": up_to})

    async def send_ack(
        self, conv_id: str, payload: MessageJSON, client_id: Any, **extra: Any
    ) -> None:
        """Acknowledge a send with the stored message.

        When the message directly follows what this socket has delivered, the ack
        *is* its message frame (``in_order``): the cursor moves, and the live event
        for the same seq, already on its way, is dropped as a repeat. That saves a
        frame per message sent; an ack that runs ahead of messages still on their
        way stays a plain ack, and the live events follow in order.
        """
        seq = payload["seq"]
        frame = {"type": "ack", "client_id": client_id, "seq": seq, "message": payload, **extra}
        have = self.delivered.get(conv_id)
        if have is not None and seq == have + 1:
            self.delivered[conv_id] = seq
            frame["in_order"] = True
        await self.send_json(frame)

    async def forward_message(self, event: dict, conversation: ChatConversation | None) -> None:
        """Forward a live message event so the socket sees every seq once, in order.

        The message frames of a socket are therefore contiguous: a client can resume
        from the last one it got (acks are extra, and don't move that point).

        Events of one conversation can arrive out of order (two workers committing
        seqs 7 and 8 at the same moment) or not at all (a broker restart). Events at
        or below what this socket already has are dropped; one that skips ahead
        triggers a replay from the database, which fills the hole in order.
        """
        conv_id, seq = event["conversation"], event["seq"]
        have = self.delivered.get(conv_id)
        if have is None or conversation is None:
            await self.send_json(event)  # not a conversation this socket tracks by seq
            return
        if seq <= have:
            return
        if seq > have + 1:
            await self.replay(conversation, have, internal=self.sees_internal)
            return
        self.delivered[conv_id] = seq
        if self.sees_internal or not event["message"].get("internal"):
            await self.send_json(event)

    async def receive_json(self, content: Any) -> None:
        if self.refused:
            return  # frames that were already on the way when the socket was refused
        await super().receive_json(content)


def _replay_payloads(
    conversation: ChatConversation, since: int, internal: bool
) -> tuple[list[MessageJSON], int]:
    last_seq = selectors.conversation_last_seq(conversation_pk=conversation.pk)
    rows = selectors.messages_since(
        conversation=conversation,
        since=max(0, since),
        include_internal=internal,
        limit=REPLAY_LIMIT,
    )
    visitor = selectors.visitor_of(conversation=conversation)
    return message_payloads(rows, visitor=visitor), last_seq
