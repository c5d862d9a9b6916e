"""``/p/chat/<key>/ws``: the visitor's socket (one visitor, one conversation of theirs)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError

from crm.chat import events, presence, ratelimit, revocation, rights, selectors
from crm.chat.models import ChatConversation, ChatVisitor, ChatWidget
from crm.chat.payloads import MessageJSON
from crm.chat.realtime.db import in_db
from crm.chat.realtime.stream import (
    ChatSocket,
    Revoked,
    error_text,
    header,
    own_origins,
    uuid_or_none,
)
from crm.chat.services import ChatError, NotServing, chat_service
from crm.conf import module_enabled

AUTH_TIMEOUT = 10  # seconds a visitor socket may stay open without authenticating
TYPING_INTERVAL = 1.0  # at most one typing relay per second per socket


class VisitorSocket(ChatSocket):
    """``/p/chat/<key>/ws``: one visitor, one conversation of theirs."""

    frame_types = frozenset({"auth", "send", "read", "typing", "ping", "sync"})
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
        origin = header(self.scope, b"origin")
        if (
            origin
            and origin not in own_origins(self.scope)
            and not self.widget.origin_allowed(origin)
        ):
            await self.refuse(4403, "origin_not_allowed", "This website may not use this widget.")
            return
        await self.join(revocation.widget_group(self.widget.pk))
        self.auth_timer = asyncio.get_running_loop().call_later(
            AUTH_TIMEOUT, self.deliver, {"type": "chat.auth_timeout"}
        )
        self.start_rechecks()

    async def chat_auth_timeout(self, message: dict[str, Any]) -> None:
        if self.conversation is None:
            await self.refuse(4408, "auth_timeout", "Authenticate within 10 seconds.")

    async def disconnect(self, code: int) -> None:
        self.stop_rechecks()
        timer = getattr(self, "auth_timer", None)
        if timer is not None:
            timer.cancel()

    def followed(self) -> list[ChatConversation]:
        return [self.conversation] if self.conversation is not None else []

    async def on_auth(self, content: dict) -> None:
        if self.conversation is not None:
            await self.send_error("already_authenticated", "This socket is already authenticated.")
            return
        token, conv_id = content.get("token"), uuid_or_none(content.get("conversation"))
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
        await self.join(events.conversation_group(self.conversation.external_id))
        await self.join(events.PRESENCE_GROUP)
        await self.replay(self.conversation, since, internal=False)
        try:
            state = await in_db(self._state)
        except Revoked as exc:
            await self.refuse_revoked(exc)
            return
        await self.send_json({"type": "ready", **state})

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
        conv = self.conversation
        state = selectors.visitor_side_state(conversation=conv)
        if state is None:
            raise Revoked(4404, "unknown_conversation", "This conversation does not exist.")
        return {
            "agents_online": presence.agents_online(self.widget),
            "conversation": {
                "id": str(conv.external_id),
                "chat_id": conv.chat_id,
                "status": state.status,
                "last_seq": state.last_seq,
                "read_up_to": state.read_up_to,
                "unread": state.unread,
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
            await self.send_error("invalid", error_text(exc), client_id=client_id)
            return
        assert self.conversation is not None
        await self.send_ack(str(self.conversation.external_id), payload, client_id)

    def _send(self, body: Any, client_id: Any) -> MessageJSON:
        assert self.visitor is not None and self.conversation is not None
        ip = (self.scope.get("client") or [None])[0]
        ratelimit.check("send_message", ip=ip, token_key=str(self.visitor.pk))
        try:
            # The socket's rights are read in the write's own statement (widget_key):
            # no separate query on the hot path, and nothing can change in between.
            result = chat_service.send_visitor_message(
                conversation=self.conversation,
                visitor=self.visitor,
                body=body,
                client_id=client_id if isinstance(client_id, str) else None,
                widget_key=self.public_key,
            )
        except NotServing:
            self._check_rights()  # raises Revoked with the reason the socket closes for
            raise
        return result.payload

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
        assert self.conversation is not None
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
        return selectors.conversation_last_seq(conversation_pk=self.conversation.pk)

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
