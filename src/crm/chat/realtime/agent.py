"""``/crm/chat/ws``: a logged-in agent's live inbox and open conversations."""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from crm.chat import events, presence, revocation, rights, selectors
from crm.chat.models import ChatConversation
from crm.chat.payloads import MessageJSON
from crm.chat.realtime import hub
from crm.chat.realtime.db import in_db
from crm.chat.realtime.stream import (
    ChatSocket,
    Revoked,
    error_text,
    header,
    own_origins,
    uuid_or_none,
)
from crm.chat.services import ChatError, chat_service
from crm.conf import module_enabled
from crm.typing import logged_in

logger = logging.getLogger(__name__)


class AgentSocket(ChatSocket):
    """``/crm/chat/ws``: a logged-in agent's live inbox and open conversations."""

    sees_internal = True
    frame_types = frozenset({"subscribe", "unsubscribe", "send", "read", "typing", "ping"})
    # The logged-in agent; ``None`` for an anonymous socket, which is refused.
    user: User | None = None

    @property
    def agent(self) -> User:
        """The agent of an authorised socket (every frame and event handler runs after)."""
        assert self.user is not None
        return self.user

    async def connect(self) -> None:
        self.user = logged_in(self.scope.get("user"))
        self.focused: dict[UUID, ChatConversation] = {}
        self.visible_cache: dict[UUID, tuple[float, bool]] = {}
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        if not module_enabled("chat"):
            await self.close(code=4404)
            return
        await self.accept()
        if self.user is None:
            await self.refuse(4401, "not_authenticated", "Log in to the CRM first.")
            return
        if not await in_db(self.user.has_perm, "crm_chat.view_chat"):
            await self.refuse(4403, "forbidden", "You don't have access to chat.")
            return
        origin = header(self.scope, b"origin")
        if origin not in own_origins(self.scope):
            # Cross-site WebSocket hijacking: cookies ride along, so the Origin decides.
            await self.refuse(4403, "origin_not_allowed", "Agent sockets are same-origin only.")
            return
        self.can_reply = await in_db(self.user.has_perm, "crm_chat.reply_chat")
        await self.join(events.INBOX_GROUP)
        for group in self._revocation_groups():
            await self.join(group)
        self.start_rechecks()
        await in_db(presence.mark_agent_online, self.user.pk)
        await hub.get_hub().publish([events.PRESENCE_GROUP], {"type": "chat.presence"})
        await self.send_json({"type": "ready", "agent_id": self.user.pk})

    def _revocation_groups(self) -> list[str]:
        groups = [revocation.user_group(self.agent.pk)]
        if self.session_key:
            groups.append(revocation.session_group(self.session_key))
        return groups

    async def disconnect(self, code: int) -> None:
        self.stop_rechecks()

    def followed(self) -> list[ChatConversation]:
        return list(self.focused.values())

    def _fresh_agent(self) -> User:
        """The agent as the database says now; raises ``Revoked`` if they lost chat."""
        user = rights.session_agent(self.session_key, self.agent.pk)
        if user is None:
            raise Revoked(4401, "session_ended", "Your session has ended. Log in again.")
        if not user.has_perm(rights.VIEW_CHAT):
            raise Revoked(4403, "forbidden", "You don't have access to chat.")
        return user

    def _rights_now(self) -> tuple[User, bool, set[UUID]]:
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
        return selectors.conversation_for_socket(agent=self.agent, external_id=conv_id)

    async def _conversation(self, content: dict, *, fresh: bool = False) -> ChatConversation | None:
        """The conversation a frame names, if this agent may open it.

        ``fresh`` (before writes and replays) reads the agent's rights from the
        database first instead of trusting those of the last recheck.
        """
        conv_id = uuid_or_none(content.get("conversation"))
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
                "agent %s refused conversation %r", self.agent.pk, content.get("conversation")
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
        conv_id = uuid_or_none(content.get("conversation"))
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
            await self.send_error("invalid", error_text(exc), client_id=client_id)
            return
        conv_id = str(conv.external_id)
        await self.send_ack(conv_id, payload, client_id, conversation=conv_id)

    def _send(self, conv: ChatConversation, body: Any, client_id: Any) -> MessageJSON:
        result = chat_service.send_agent_message(
            conversation=conv,
            agent=self.agent,
            body=body,
            client_id=client_id if isinstance(client_id, str) else None,
        )
        return result.payload

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
            sender_id=self.agent.pk,
            sender_name=self.agent.get_full_name() or self.agent.get_username(),
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
        presence.mark_agent_online(self.agent.pk)
        return selectors.last_seqs(conversation_pks=[c.pk for c in self.focused.values()])

    async def chat_event(self, message: dict) -> None:
        if self.refused:
            return
        event = message["event"]
        if event["type"] == "typing" and (event["sender_type"], event["sender_id"]) == (
            "user",
            self.agent.pk,
        ):
            return  # our own typing, echoed by the group
        conv_id = uuid_or_none(event.get("conversation"))
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
