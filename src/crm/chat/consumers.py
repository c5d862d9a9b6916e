"""WebSocket consumers: the visitor's socket and the agent's socket.

Both authorise before they subscribe to anything: the visitor by the token in its
first frame (never in the URL, which lands in logs) plus the widget's allowed
Origin; the agent by the session cookie, the chat permission and the CRM's own
Origin (so another site can't open a socket with the agent's cookies).

Delivery is lossless by construction: a client sends the highest ``seq`` it has
seen; the consumer joins the live group first and then replays everything after
that seq from the database, so nothing committed in between can be missed.
Duplicates (a message both replayed and broadcast) are dropped by the clients by
seq. Sends are idempotent by ``client_id`` and acknowledged with the stored seq.

Rights are not a connect-time snapshot (``crm.chat.revocation``): a socket reads
them again when a revocation event reaches it, before every write, and every
``CRM_CHAT_SOCKET_RECHECK_SECONDS``; one that lost them closes, and an agent socket
that lost one conversation stops following it (a ``revoked`` frame).

Close codes: 4400 bad frame, 4401 bad or missing token or session ended, 4403
forbidden (origin or permission), 4404 unknown widget or conversation or module
disabled, 4408 no auth frame in time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any
from uuid import UUID

from asgiref.sync import SyncToAsync
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError
from django.db import connections

from crm.chat import events, presence, ratelimit, revocation, rights, selectors
from crm.chat.models import ChatConversation, ChatVisitor, ChatWidget
from crm.chat.payloads import message_payloads
from crm.chat.services import ChatError, chat_service
from crm.conf import crm_settings, module_enabled, public_url

logger = logging.getLogger(__name__)

AUTH_TIMEOUT = 10  # seconds a visitor socket may stay open without authenticating
TYPING_INTERVAL = 1.0  # at most one typing relay per second per socket
REPLAY_LIMIT = 1000
# A client that doesn't read for this long is dropped; it reconnects and resumes by
# seq. This bounds what piles up for one slow socket in memory (the layer's queue
# and the transport buffer) to a few seconds of traffic.
SEND_TIMEOUT = 10


class _SocketDbHop(SyncToAsync):
    """Run a consumer's database work in the shared sync thread, keeping its connection.

    Channels' ``database_sync_to_async`` closes the connection around every hop (with
    ``CONN_MAX_AGE = 0``), so each chat message opened a fresh one: ~0.9 ms on SQLite
    (see bench/PROFILE.md). Consumers' hops all run in asgiref's single shared thread,
    so that thread keeps one connection (a pooled one on PostgreSQL) and closes it
    only when it has failed, e.g. after a database restart; the next hop reconnects.
    """

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.errors_occurred or conn.in_atomic_block:
                    conn.close_if_unusable_or_obsolete()


def database_sync_to_async(func: Any) -> Any:
    """``sync_to_async`` for consumers (thread-sensitive; the connection is kept)."""
    return _SocketDbHop(func, thread_sensitive=True)


async def in_db(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` in the database thread; send the events it committed from here."""
    with events.collected() as pending:
        try:
            return await database_sync_to_async(func)(*args, **kwargs)
        finally:  # what committed is sent even if the hop failed afterwards
            for groups, event in pending:
                await events.send_now_async(groups, event)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _own_origins(scope: dict[str, Any]) -> set[str]:
    """The CRM's own origins: its public URL and the Host this socket came in on."""
    host = _header(scope, b"host") or ""
    secure = scope.get("scheme") in {"wss", "https"}
    own = {public_url()}
    if host:
        own.add(f"{'https' if secure else 'http'}://{host}")
    return own


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except (TypeError, ValueError):
        return None


class Revoked(Exception):
    """Raised inside a database hop: the socket lost the right it was about to use."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code, self.code, self.message = close_code, code, message


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return getattr(exc, "message", str(exc))


class _ChatSocket(AsyncJsonWebsocketConsumer):
    """Shared plumbing: error frames, event forwarding, replay."""

    groups: list[str] = []
    sees_internal = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Highest message seq this socket has delivered, per conversation it follows.
        self.delivered: dict[str, int] = {}
        # Set once the server refused the socket: nothing more is read or forwarded.
        self.refused = False
        self.recheck_task: asyncio.Task | None = None

    async def send_json(self, content: Any, close: bool = False) -> None:
        try:
            await asyncio.wait_for(super().send_json(content, close), SEND_TIMEOUT)
        except TimeoutError:
            logger.warning("dropping a chat socket that stopped reading: %s", self.scope["path"])
            raise StopConsumer() from None

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

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

    async def chat_recheck(self, message: dict) -> None:
        """A revocation event (``crm.chat.revocation``) reached this socket."""
        if not self.refused:
            await self.recheck(ended=bool(message.get("ended")))

    def start_rechecks(self) -> None:
        """Re-check periodically: the second line when a revocation event is lost."""
        if self.recheck_task is None:
            self.recheck_task = asyncio.ensure_future(self._recheck_periodically())

    async def _recheck_periodically(self) -> None:
        interval = float(crm_settings.CRM_CHAT_SOCKET_RECHECK_SECONDS)
        # Jittered, so sockets opened together don't all query at the same instant.
        await asyncio.sleep(interval * random.uniform(0.5, 1.0))
        while not self.refused:
            try:
                if not await self.recheck():
                    return
            except StopConsumer:
                return
            except Exception:
                # A database outage must not end the loop (nor widen access: the
                # next write re-checks too, and fails while the database is down).
                logger.exception("socket recheck failed: %s", self.scope.get("path"))
            await asyncio.sleep(interval)

    def stop_rechecks(self) -> None:
        if self.recheck_task is not None:
            self.recheck_task.cancel()
            self.recheck_task = None

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

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.refused:
            return  # frames that were already on the way when the socket was refused
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("bad_frame", "Frames are JSON objects with a type.")
            return
        handler = getattr(self, f"on_{content['type']}", None)
        if handler is None:
            await self.send_error("unknown_type", f"Unknown frame type {content['type']!r}.")
            return
        await handler(content)

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def on_ping(self, content: dict) -> None:
        await self.send_json({"type": "pong"})


def _replay_payloads(
    conversation: ChatConversation, since: int, internal: bool
) -> tuple[list[dict], int]:
    last_seq = ChatConversation.objects.values_list("last_seq", flat=True).get(pk=conversation.pk)
    rows = selectors.messages_since(
        conversation=conversation,
        since=max(0, since),
        include_internal=internal,
        limit=REPLAY_LIMIT,
    )
    visitor = ChatVisitor.objects.get(pk=conversation.visitor_id)
    return [p.model_dump(mode="json") for p in message_payloads(rows, visitor=visitor)], last_seq


# ------------------------------------------------------------------------ visitor


class VisitorConsumer(_ChatSocket):
    """``/p/chat/<key>/ws``: one visitor, one conversation of theirs."""

    widget: ChatWidget | None = None
    visitor: ChatVisitor | None = None
    conversation: ChatConversation | None = None

    async def connect(self) -> None:
        self.last_typing = 0.0
        if not module_enabled("chat"):
            await self.close(code=4404)
            return
        key = self.public_key = self.scope["url_route"]["kwargs"]["public_key"]
        self.widget = await in_db(selectors.widget_by_public_key, public_key=key)
        await self.accept()
        if self.widget is None:
            await self.refuse(4404, "unknown_widget", "This chat widget does not exist.")
            return
        origin = _header(self.scope, b"origin")
        if (
            origin
            and origin not in _own_origins(self.scope)
            and not self.widget.origin_allowed(origin)
        ):
            await self.refuse(4403, "origin_not_allowed", "This website may not use this widget.")
            return
        await self.channel_layer.group_add(
            revocation.widget_group(self.widget.pk), self.channel_name
        )
        self.auth_timer = asyncio.get_running_loop().call_later(
            AUTH_TIMEOUT, lambda: asyncio.ensure_future(self._auth_timeout())
        )
        self.start_rechecks()

    async def _auth_timeout(self) -> None:
        if self.conversation is None:
            await self.refuse(4408, "auth_timeout", "Authenticate within 10 seconds.")

    async def disconnect(self, code: int) -> None:
        self.stop_rechecks()
        timer = getattr(self, "auth_timer", None)
        if timer is not None:
            timer.cancel()
        if self.widget is not None:
            await self.channel_layer.group_discard(
                revocation.widget_group(self.widget.pk), self.channel_name
            )
        if self.conversation is not None:
            await self.channel_layer.group_discard(
                events.conversation_group(self.conversation.external_id), self.channel_name
            )
            await self.channel_layer.group_discard(events.PRESENCE_GROUP, self.channel_name)

    async def on_auth(self, content: dict) -> None:
        if self.conversation is not None:
            await self.send_error("already_authenticated", "This socket is already authenticated.")
            return
        token, conv_id = content.get("token"), _uuid(content.get("conversation"))
        since = content.get("since", 0)
        if not isinstance(token, str) or conv_id is None or not isinstance(since, int):
            await self.refuse(4400, "bad_frame", "auth needs token, conversation and since.")
            return
        found = await in_db(self._authorise, token, conv_id)
        if found is None:
            await self.refuse(4401, "invalid_token", "This token can't open this conversation.")
            return
        self.visitor, self.conversation = found
        self.auth_timer.cancel()
        await self.channel_layer.group_add(
            events.conversation_group(self.conversation.external_id), self.channel_name
        )
        await self.channel_layer.group_add(events.PRESENCE_GROUP, self.channel_name)
        await self.replay(self.conversation, since, internal=False)
        await self.send_json({"type": "ready", **await in_db(self._state)})

    async def recheck(self, *, ended: bool = False) -> bool:
        assert self.widget is not None
        conv_pk = self.conversation.pk if self.conversation is not None else None
        refusal = await in_db(
            rights.visitor_refusal,
            widget_pk=self.widget.pk,
            public_key=self.public_key,
            conversation_pk=conv_pk,
        )
        if refusal is not None:
            await self.refuse(*refusal)
            return False
        return True

    def _check_rights(self) -> None:
        """Before a write, in the write's own database hop."""
        assert self.widget is not None and self.conversation is not None
        refusal = rights.visitor_refusal(
            widget_pk=self.widget.pk,
            public_key=self.public_key,
            conversation_pk=self.conversation.pk,
        )
        if refusal is not None:
            raise Revoked(*refusal)

    def _authorise(self, token: str, conv_id: UUID) -> tuple[ChatVisitor, ChatConversation] | None:
        assert self.widget is not None
        if rights.visitor_refusal(
            widget_pk=self.widget.pk, public_key=self.public_key, conversation_pk=None
        ):
            return None  # the key changed or the widget went away since connect
        visitor = selectors.visitor_by_token(widget=self.widget, token=token)
        if visitor is None:
            return None
        conversation = selectors.visitor_conversation_get(visitor=visitor, external_id=conv_id)
        if conversation is None:
            return None
        chat_service.touch_visitor(visitor=visitor)
        return visitor, conversation

    def _state(self) -> dict[str, Any]:
        assert self.conversation is not None and self.widget is not None
        conv = ChatConversation.objects.get(pk=self.conversation.pk)
        return {
            "agents_online": presence.agents_online(self.widget),
            "conversation": {
                "id": str(conv.external_id),
                "chat_id": conv.chat_id,
                "status": conv.status,
                "last_seq": conv.last_seq,
                "read_up_to": selectors.visitor_messages_read_up_to(conversation=conv),
                "unread": selectors.unread_for_visitor(conversation=conv),
            },
        }

    async def _require_auth(self) -> bool:
        if self.conversation is None:
            await self.refuse(4401, "not_authenticated", "Send an auth frame first.")
            return False
        return True

    async def on_send(self, content: dict) -> None:
        if not await self._require_auth():
            return
        client_id = content.get("client_id")
        try:
            payload = await in_db(self._send, content.get("body"), client_id)
        except Revoked as exc:
            await self.refuse_revoked(exc)
            return
        except ratelimit.Limited as exc:
            await self.send_error(
                "rate_limited", exc.message, client_id=client_id, retry_after=exc.retry_after
            )
            return
        except (ValidationError, ChatError) as exc:
            await self.send_error("invalid", _error_text(exc), client_id=client_id)
            return
        await self.send_json({"type": "ack", "client_id": client_id, "seq": payload["seq"],
                              "message": payload})  # fmt: skip

    def _send(self, body: Any, client_id: Any) -> dict:
        assert self.visitor is not None and self.conversation is not None
        self._check_rights()
        ip = (self.scope.get("client") or [None])[0]
        ratelimit.check("send_message", ip=ip, token_key=str(self.visitor.pk))
        result = chat_service.send_visitor_message(
            conversation=self.conversation,
            visitor=self.visitor,
            body=body,
            client_id=client_id if isinstance(client_id, str) else None,
        )
        (payload,) = message_payloads([result.message], visitor=self.visitor)
        return payload.model_dump(mode="json")

    async def on_read(self, content: dict) -> None:
        if not await self._require_auth():
            return
        up_to = content.get("up_to_seq")
        if up_to is not None and not isinstance(up_to, int):
            await self.send_error("bad_frame", "up_to_seq must be an integer.")
            return
        try:
            await in_db(self._read, up_to)
        except Revoked as exc:
            await self.refuse_revoked(exc)

    def _read(self, up_to: int | None) -> None:
        self._check_rights()
        chat_service.mark_read(conversation=self.conversation, reader="visitor", up_to_seq=up_to)

    async def on_typing(self, content: dict) -> None:
        if not await self._require_auth():
            return
        now = time.monotonic()
        is_typing = bool(content.get("typing"))
        if is_typing and now - self.last_typing < TYPING_INTERVAL:
            return
        self.last_typing = now if is_typing else 0.0
        assert self.conversation is not None and self.visitor is not None
        event = events.Typing(
            conversation=self.conversation.external_id,
            sender_type="visitor",
            sender_id=self.visitor.pk,
            sender_name=self.visitor.display_name,
            typing=is_typing,
        )
        await events.send_now_async(
            [events.conversation_group(self.conversation.external_id), events.INBOX_GROUP], event
        )

    async def on_ping(self, content: dict) -> None:
        """Heartbeat: keeps the visitor "online" and refreshes agents' presence."""
        if self.visitor is None:
            await self.send_json({"type": "pong"})
            return
        assert self.conversation is not None
        last_seq = await in_db(self._touch)
        await self.send_json(
            {"type": "pong", "agents_online": await self._agents_online(), "last_seq": last_seq}
        )

    def _touch(self) -> int:
        """Refresh last-seen; return the conversation's last seq so the client can
        notice a live event it missed (e.g. while Redis restarted) and ask to sync."""
        assert self.visitor is not None and self.conversation is not None
        chat_service.touch_visitor(visitor=self.visitor)
        return ChatConversation.objects.values_list("last_seq", flat=True).get(
            pk=self.conversation.pk
        )

    async def on_sync(self, content: dict) -> None:
        """Replay after ``since`` again: the client saw a gap in the live stream."""
        if not await self._require_auth():
            return
        since = content.get("since")
        if not isinstance(since, int):
            await self.send_error("bad_frame", "since must be an integer.")
            return
        assert self.conversation is not None
        if not await self.recheck():
            return
        # Frames on one socket are never lost (TCP), only not yet read: replay from
        # what this socket was already sent, which catches events the broker dropped
        # without repeating ones still in flight.
        conv_id = str(self.conversation.external_id)
        await self.replay(
            self.conversation, max(since, self.delivered.get(conv_id, 0)), internal=False
        )

    async def _agents_online(self) -> int:
        assert self.widget is not None
        return await in_db(presence.agents_online, self.widget)

    async def chat_presence(self, message: dict) -> None:
        await self.send_json({"type": "presence", "agents_online": await self._agents_online()})

    async def chat_event(self, message: dict) -> None:
        if self.refused:
            return
        event = message["event"]
        if event["type"] == "message":
            # Internal notes are never sent to visitors (forward_message skips them).
            await self.forward_message(event, self.conversation)
            return
        if event["type"] == "typing" and event["sender_type"] == "visitor":
            return
        if event["type"] in {"assigned", "opened"}:
            return
        await self.send_json(event)


# -------------------------------------------------------------------------- agent


class AgentConsumer(_ChatSocket):
    """``/crm/chat/ws``: a logged-in agent's live inbox and open conversations."""

    sees_internal = True

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.focused: dict[UUID, ChatConversation] = {}
        self.visible_cache: dict[UUID, tuple[float, bool]] = {}
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        if not module_enabled("chat"):
            await self.close(code=4404)
            return
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.refuse(4401, "not_authenticated", "Log in to the CRM first.")
            return
        if not await in_db(self.user.has_perm, "crm_chat.view_chat"):
            await self.refuse(4403, "forbidden", "You don't have access to chat.")
            return
        origin = _header(self.scope, b"origin")
        if origin not in _own_origins(self.scope):
            # Cross-site WebSocket hijacking: cookies ride along, so the Origin decides.
            await self.refuse(4403, "origin_not_allowed", "Agent sockets are same-origin only.")
            return
        self.can_reply = await in_db(self.user.has_perm, "crm_chat.reply_chat")
        await self.channel_layer.group_add(events.INBOX_GROUP, self.channel_name)
        for group in self._revocation_groups():
            await self.channel_layer.group_add(group, self.channel_name)
        self.start_rechecks()
        await in_db(presence.mark_agent_online, self.user.pk)
        await self.channel_layer.group_send(events.PRESENCE_GROUP, {"type": "chat.presence"})
        await self.send_json({"type": "ready", "agent_id": self.user.pk})

    def _revocation_groups(self) -> list[str]:
        groups = [revocation.user_group(self.user.pk)]
        if self.session_key:
            groups.append(revocation.session_group(self.session_key))
        return groups

    async def disconnect(self, code: int) -> None:
        self.stop_rechecks()
        if self.user is not None and self.user.is_authenticated:
            await self.channel_layer.group_discard(events.INBOX_GROUP, self.channel_name)
            for group in self._revocation_groups():
                await self.channel_layer.group_discard(group, self.channel_name)

    def _fresh_agent(self) -> Any:
        """The agent as the database says now; raises ``Revoked`` if they lost chat."""
        user = rights.session_agent(self.session_key, self.user.pk)
        if user is None:
            raise Revoked(4401, "session_ended", "Your session has ended. Log in again.")
        if not user.has_perm(rights.VIEW_CHAT):
            raise Revoked(4403, "forbidden", "You don't have access to chat.")
        return user

    def _rights_now(self) -> tuple[Any, bool, set[UUID]]:
        user = self._fresh_agent()
        visible = rights.visible_among(agent=user, external_ids=self.focused)
        return user, user.has_perm(rights.REPLY_CHAT), visible

    async def recheck(self, *, ended: bool = False) -> bool:
        try:
            if ended:
                raise Revoked(4401, "session_ended", "Your session has ended. Log in again.")
            self.user, self.can_reply, visible = await in_db(self._rights_now)
        except Revoked as exc:
            await self.refuse_revoked(exc)
            return False
        self.visible_cache.clear()
        for conv_id in [c for c in self.focused if c not in visible]:
            await self._drop(conv_id)
        return True

    async def _drop(self, conv_id: UUID) -> None:
        """Stop following a conversation this agent may no longer open."""
        self.focused.pop(conv_id, None)
        self.delivered.pop(str(conv_id), None)
        await self.send_json({"type": "revoked", "conversation": str(conv_id),
                              "message": "You no longer have access to this chat."})  # fmt: skip

    def _visible(self, conv_id: UUID, fresh: bool = False) -> ChatConversation | None:
        if fresh:
            self.user = self._fresh_agent()
            self.can_reply = self.user.has_perm(rights.REPLY_CHAT)
        return selectors.conversation_get(agent=self.user, external_id=conv_id)

    async def _conversation(self, content: dict, *, fresh: bool = False) -> ChatConversation | None:
        """The conversation a frame names, if this agent may open it.

        ``fresh`` (before writes and replays) reads the agent's rights from the
        database first instead of trusting those of the last recheck.
        """
        conv_id = _uuid(content.get("conversation"))
        try:
            conv = await in_db(self._visible, conv_id, fresh) if conv_id else None
        except Revoked as exc:
            await self.refuse_revoked(exc)
            return None
        if self.refused:
            return None
        if conv is None:
            if conv_id is not None and conv_id in self.focused:
                await self._drop(conv_id)
            logger.warning(
                "agent %s refused conversation %r", self.user.pk, content.get("conversation")
            )
            await self.send_error("not_found", "This conversation does not exist.",
                                  conversation=content.get("conversation"))  # fmt: skip
        return conv

    async def on_subscribe(self, content: dict) -> None:
        since = content.get("since", 0)
        if not isinstance(since, int):
            await self.send_error("bad_frame", "since must be an integer.")
            return
        conv = await self._conversation(content, fresh=True)
        if conv is None:
            return
        self.focused[conv.external_id] = conv
        # Re-subscribing on the same socket replays only what it was never sent (see
        # VisitorConsumer.on_sync).
        since = max(since, self.delivered.get(str(conv.external_id), 0))
        await self.replay(conv, since, internal=True)
        await self.send_json({"type": "subscribed", "conversation": str(conv.external_id),
                              "last_seq": conv.last_seq, "status": conv.status})  # fmt: skip

    async def on_unsubscribe(self, content: dict) -> None:
        conv_id = _uuid(content.get("conversation"))
        if conv_id is not None:
            self.focused.pop(conv_id, None)
            self.delivered.pop(str(conv_id), None)

    async def on_send(self, content: dict) -> None:
        client_id = content.get("client_id")
        conv = await self._conversation(content, fresh=True)
        if conv is None:
            return
        if not self.can_reply:
            await self.send_error("forbidden", "You may not reply to chats.", client_id=client_id)
            return
        try:
            payload = await in_db(self._send, conv, content.get("body"), client_id)
        except (ValidationError, ChatError) as exc:
            await self.send_error("invalid", _error_text(exc), client_id=client_id)
            return
        await self.send_json({"type": "ack", "client_id": client_id, "seq": payload["seq"],
                              "conversation": str(conv.external_id), "message": payload})  # fmt: skip

    def _send(self, conv: ChatConversation, body: Any, client_id: Any) -> dict:
        result = chat_service.send_agent_message(
            conversation=conv,
            agent=self.user,
            body=body,
            client_id=client_id if isinstance(client_id, str) else None,
        )
        (payload,) = message_payloads([result.message], visitor=conv.visitor)
        return payload.model_dump(mode="json")

    async def on_read(self, content: dict) -> None:
        conv = await self._conversation(content, fresh=True)
        up_to = content.get("up_to_seq")
        if conv is None or (up_to is not None and not isinstance(up_to, int)):
            return
        await in_db(chat_service.mark_read, conversation=conv, reader="user", up_to_seq=up_to)

    async def on_typing(self, content: dict) -> None:
        conv = await self._conversation(content)
        if conv is None or not self.can_reply:
            return
        event = events.Typing(
            conversation=conv.external_id,
            sender_type="user",
            sender_id=self.user.pk,
            sender_name=self.user.get_full_name() or self.user.get_username(),
            typing=bool(content.get("typing")),
        )
        await events.send_now_async(
            [events.conversation_group(conv.external_id), events.INBOX_GROUP], event
        )

    async def on_ping(self, content: dict) -> None:
        """Heartbeat: keeps the agent online; reports the last seq of open conversations."""
        last_seqs = await in_db(self._heartbeat)
        await self.send_json({"type": "pong", "last_seqs": last_seqs})

    def _heartbeat(self) -> dict[str, int]:
        presence.mark_agent_online(self.user.pk)
        rows = ChatConversation.objects.filter(pk__in=[c.pk for c in self.focused.values()])
        return {str(ext): seq for ext, seq in rows.values_list("external_id", "last_seq")}

    async def chat_event(self, message: dict) -> None:
        if self.refused:
            return
        event = message["event"]
        if event["type"] == "typing" and (event["sender_type"], event["sender_id"]) == (
            "user",
            self.user.pk,
        ):
            return  # our own typing, echoed by the group
        conv_id = _uuid(event.get("conversation"))
        if conv_id is None:
            return
        if not await self._may_see(conv_id, event):
            if conv_id in self.focused:  # e.g. reassigned to a colleague just now
                await self._drop(conv_id)
            return
        if event["type"] == "message":
            await self.forward_message(event, self.focused.get(conv_id))
            return
        await self.send_json(event)

    async def _may_see(self, conv_id: UUID, event: dict) -> bool:
        """Agents limited to their own chats only hear about those (and unassigned ones).

        Assignment changes invalidate the cached answer, so a chat taken by a
        colleague disappears from a limited agent's live stream at once.
        """
        if event["type"] == "assigned":
            self.visible_cache.pop(conv_id, None)
        cached = self.visible_cache.get(conv_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < 5:
            return cached[1]
        visible = await in_db(self._visible, conv_id) is not None
        self.visible_cache[conv_id] = (now, visible)
        if len(self.visible_cache) > 1000:
            self.visible_cache.clear()
        return visible
