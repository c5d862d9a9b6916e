"""ChatService: the only code that writes chat rows.

Each public method validates first, then writes inside one transaction, and
publishes its realtime event with ``transaction.on_commit``. Integrations (the
public API, the inbox, the consumers, the CLI, the admin) call these methods and
never touch the models' ``save()`` themselves, as the original module asks.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Exists, Max, OuterRef, Subquery, Value
from django.utils import timezone

from crm.chat import events, geo, notifications, presence, revocation, selectors
from crm.chat.models import (
    ChatConversation,
    ChatMessage,
    ChatVisitor,
    ChatVisitorPageView,
    ChatWidget,
    hash_token,
    max_body_length,
    new_public_key,
    new_visitor_token,
    normalise_origin,
)
from crm.chat.payloads import agent_display_name, message_payload, sender_names
from crm.conf import table_name
from crm.core.models import Email, Lead, Note, Person

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# client_id of the offline auto-reply: at most one per conversation.
AUTO_REPLY_CLIENT_ID = "auto:offline"
FIRST_CHAT_NUMBER = 1001
# last_seen_at is refreshed at most this often, so polling doesn't write every time.
SEEN_RESOLUTION = timedelta(seconds=15)


class ChatError(Exception):
    """A refused operation; ``code`` is stable for API clients, the message is for people."""

    code = "chat_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidToken(ChatError):
    code = "invalid_token"


class ConversationClosed(ChatError):
    code = "conversation_closed"


class AlreadyConverted(ChatError):
    code = "already_converted"


class NotAllowed(ChatError):
    code = "not_allowed"


@dataclass(frozen=True)
class SendResult:
    message: ChatMessage
    # False when the client_id was seen before and the stored message is returned.
    created: bool


def _clean_text(value: str | None, *, field: str, max_length: int) -> str:
    text = (value or "").strip()
    if len(text) > max_length:
        raise ValidationError(
            {field: f"Must be at most {max_length} characters (it has {len(text)})."},
            code="too_long",
        )
    return text


def _clean_http_url(value: str | None, *, field: str, max_length: int = 2048) -> str:
    """Accept only http(s) URLs: a ``javascript:`` URL must never reach an href."""
    url = (value or "").strip()
    if not url:
        return ""
    if len(url) > max_length:
        raise ValidationError({field: f"Must be at most {max_length} characters."}, code="too_long")
    if urlsplit(url).scheme.lower() not in {"http", "https"} or any(c in url for c in "\r\n\t"):
        raise ValidationError({field: "Must be an http:// or https:// URL."}, code="invalid_url")
    return url


def _chat_number_lock_id() -> int:
    # A stable 31-bit key per table, so two installs sharing a database (different
    # prefixes) don't serialise on each other's lock.
    return zlib.crc32(table_name("chat_conversations").encode()) & 0x7FFFFFFF


class ChatService:
    """Every chat write. Methods take keyword-only arguments and return what changed."""

    # ------------------------------------------------------------------ widgets

    WIDGET_FIELDS = (
        "name", "welcome_message", "color", "position", "allowed_origins", "is_active", "team",
        "offline_message", "business_hours", "time_zone", "missed_chat_minutes",
    )  # fmt: skip

    def create_widget(self, *, name: str, **fields: object) -> ChatWidget:
        """Create a widget; ``fields`` are any of ``WIDGET_FIELDS``."""
        widget = ChatWidget(name=name)
        return self.update_widget(widget=widget, **fields)

    def update_widget(self, *, widget: ChatWidget, **fields: object) -> ChatWidget:
        """Create (no pk yet) or change a widget; a deleted widget must be restored first.

        An existing widget saves only the fields given: an instance read before a
        new key was issued or before the widget was deleted must not write the old
        key or ``deleted_at`` back (that would revive a revoked key or widget).
        """
        unknown = set(fields) - set(self.WIDGET_FIELDS)
        if unknown:
            raise ValidationError(f"Unknown widget fields: {', '.join(sorted(unknown))}.")
        if widget.pk is not None:
            self._refuse_if_deleted(widget)
        for field, value in fields.items():
            setattr(widget, field, value)
        if isinstance(widget.allowed_origins, str):
            widget.allowed_origins = origins_from_text(widget.allowed_origins)
        widget.full_clean()
        with transaction.atomic():
            if widget.pk is None:
                widget.save()
            else:
                widget.save(update_fields=[*fields, "updated_at"])
                # Deactivation, a team or origins change: any save may narrow who
                # may use the widget, so its open sockets look again.
                revocation.widget_changed(widget.pk, reason="widget changed")
        return widget

    def regenerate_public_key(self, *, widget: ChatWidget) -> ChatWidget:
        """Issue a new public key; embed snippets with the old one stop working at once."""
        key = new_public_key()
        with transaction.atomic():
            # The deleted_at filter makes check and write one statement: a widget
            # deleted meanwhile keeps its key (restoring it must not need a new snippet).
            if not ChatWidget.objects.filter(pk=widget.pk, deleted_at__isnull=True).update(
                public_key=key
            ):
                raise NotAllowed(f"{widget.name} is deleted; restore it first.")
            revocation.widget_changed(widget.pk, reason="widget key changed")
        widget.public_key = key
        return widget

    def delete_widget(self, *, widget: ChatWidget) -> ChatWidget:
        """Soft-delete: the widget stops serving everywhere at once; nothing is lost.

        Visitors, conversations and messages stay (the inbox shows the chats, marked
        as from a deleted widget) until ``restore_widget`` or ``purge_widget``.
        """
        now = timezone.now()
        with transaction.atomic():
            if not ChatWidget.objects.filter(pk=widget.pk, deleted_at__isnull=True).update(
                deleted_at=now, updated_at=now
            ):
                raise NotAllowed(f"{widget.name} is already deleted.")
            # Visitor sockets of this widget close; agents' sockets look again.
            revocation.widget_changed(widget.pk, reason="widget deleted")
        widget.deleted_at = now
        return widget

    def restore_widget(self, *, widget: ChatWidget) -> ChatWidget:
        """Undo ``delete_widget``: the widget serves again with the same key and settings.

        No recheck is sent: restoring only widens access, and sockets are opened anew.
        """
        now = timezone.now()
        with transaction.atomic():
            if not ChatWidget.objects.filter(pk=widget.pk, deleted_at__isnull=False).update(
                deleted_at=None, updated_at=now
            ):
                raise NotAllowed(f"{widget.name} is not deleted.")
        widget.deleted_at = None
        return widget

    def purge_widget(self, *, widget: ChatWidget) -> selectors.WidgetRows:
        """Destroy a soft-deleted widget with its visitors, conversations and messages.

        Only a deleted widget can be purged, so destroying chats always takes two
        deliberate steps. Returns what was destroyed. The row lock keeps a concurrent
        restore from reviving a widget halfway through its cascade.
        """
        with transaction.atomic():
            locked = ChatWidget.objects.select_for_update().filter(pk=widget.pk).first()
            if locked is None or locked.deleted_at is None:
                raise NotAllowed(f"Only a deleted widget can be purged; {widget.name} is not.")
            _, per_model = locked.delete()
            revocation.widget_changed(widget.pk, reason="widget purged")
        return selectors.WidgetRows(
            visitors=per_model.get(ChatVisitor._meta.label, 0),
            conversations=per_model.get(ChatConversation._meta.label, 0),
            messages=per_model.get(ChatMessage._meta.label, 0),
        )

    @staticmethod
    def _refuse_if_deleted(widget: ChatWidget) -> None:
        """Read ``deleted_at`` from the database: the caller's instance may be stale.

        No lock needed: a delete that commits in between is harmless, because the
        save writes only the fields it was given, never ``deleted_at``.
        """
        rows = list(ChatWidget.objects.filter(pk=widget.pk).values_list("deleted_at", flat=True))
        if not rows:
            raise NotAllowed(f"{widget.name} no longer exists.")
        if rows[0] is not None:
            raise NotAllowed(f"{widget.name} is deleted; restore it first.")

    # ----------------------------------------------------------------- visitors

    def identify_visitor(
        self,
        *,
        widget: ChatWidget,
        token: str | None,
        ip_address: str | None = None,
        user_agent: str = "",
        current_url: str = "",
    ) -> tuple[ChatVisitor, str | None]:
        """Find the visitor of ``token`` on this widget, or create one when no token is given.

        Returns the visitor and, only when it was just created, its plain token (the
        database keeps a digest). A token unknown to this widget, including one of
        another widget, is refused rather than silently replaced, so a visitor never
        loses their conversation to a typo and tokens can't be moved across sites.
        """
        current_url = _clean_http_url(current_url, field="current_url")
        if token:
            visitor = ChatVisitor.objects.filter(
                widget=widget, visitor_token=hash_token(token)
            ).first()
            if visitor is None:
                raise InvalidToken("This visitor token is not valid for this widget.")
            self.touch_visitor(
                visitor=visitor,
                ip_address=ip_address,
                user_agent=user_agent,
                current_url=current_url,
            )
            return visitor, None
        plain = new_visitor_token()
        visitor = ChatVisitor(
            widget=widget,
            visitor_token=hash_token(plain),
            ip_address=ip_address or None,
            user_agent=(user_agent or "")[:512],
            country_code=geo.country_code(ip_address),
            current_url=current_url,
            last_seen_at=timezone.now(),
        )
        visitor.full_clean()
        visitor.save()
        return visitor, plain

    def touch_visitor(
        self,
        *,
        visitor: ChatVisitor,
        ip_address: str | None = None,
        user_agent: str = "",
        current_url: str = "",
    ) -> ChatVisitor:
        """Refresh last-seen and request context; skips the write when nothing changed."""
        now = timezone.now()
        changes: dict[str, object] = {}
        if visitor.last_seen_at is None or now - visitor.last_seen_at >= SEEN_RESOLUTION:
            changes["last_seen_at"] = now
        if ip_address and ip_address != visitor.ip_address:
            changes["ip_address"] = ip_address
            changes["country_code"] = geo.country_code(ip_address)
        if user_agent and user_agent[:512] != visitor.user_agent:
            changes["user_agent"] = user_agent[:512]
        if current_url and current_url != visitor.current_url:
            changes["current_url"] = _clean_http_url(current_url, field="current_url")
        if changes:
            changes.setdefault("last_seen_at", now)
            ChatVisitor.objects.filter(pk=visitor.pk).update(**changes)
            for field, value in changes.items():
                setattr(visitor, field, value)
        return visitor

    def update_visitor_details(
        self, *, visitor: ChatVisitor, name: str | None = None, email: str | None = None
    ) -> ChatVisitor:
        """Set the name and/or email the visitor typed; blanks keep the old value."""
        errors: dict[str, str] = {}
        clean_name = (name or "").strip()
        clean_email = (email or "").strip().lower()
        if len(clean_name) > 255:
            errors["name"] = "Please use at most 255 characters for your name."
        elif any(ord(c) < 32 for c in clean_name):
            errors["name"] = "Your name contains characters that are not allowed."
        if clean_email:
            try:
                validate_email(clean_email)
            except ValidationError:
                errors["email"] = "Please enter a valid email address."
        if errors:
            raise ValidationError(errors, code="invalid")
        update: dict[str, str] = {}
        if clean_name:
            update["name"] = clean_name
        if clean_email:
            update["email"] = clean_email
        if update:
            ChatVisitor.objects.filter(pk=visitor.pk).update(**update)
            for field, value in update.items():
                setattr(visitor, field, value)
        return visitor

    def record_page_view(
        self, *, visitor: ChatVisitor, url: str, title: str = "", referrer: str = ""
    ) -> ChatVisitorPageView | None:
        """Append to the visitor's page trail; a repeat of the latest URL only bumps its time."""
        clean_url = _clean_http_url(url, field="url")
        if not clean_url:
            return None
        clean_title = " ".join((title or "").split())[:512]
        try:
            clean_referrer = _clean_http_url(referrer, field="referrer")
        except ValidationError:
            clean_referrer = ""  # an odd referrer is the host page's doing, not worth a 4xx
        now = timezone.now()
        with transaction.atomic():
            latest = (
                ChatVisitorPageView.objects.select_for_update()
                .filter(visitor=visitor)
                .order_by("-viewed_at", "-id")
                .first()
            )
            if latest is not None and latest.url == clean_url:
                ChatVisitorPageView.objects.filter(pk=latest.pk).update(
                    viewed_at=now, title=clean_title or latest.title
                )
                latest.viewed_at = now
                view = latest
            else:
                view = ChatVisitorPageView.objects.create(
                    visitor=visitor,
                    url=clean_url,
                    title=clean_title,
                    referrer=clean_referrer,
                    viewed_at=now,
                )
            ChatVisitor.objects.filter(pk=visitor.pk).update(
                current_url=clean_url, last_seen_at=now
            )
            visitor.current_url, visitor.last_seen_at = clean_url, now
        return view

    # ------------------------------------------------------------ conversations

    def open_conversation(self, *, visitor: ChatVisitor, subject: str = "") -> ChatConversation:
        """Return the visitor's open or pending conversation, or start a new one.

        The visitor row is locked first, so two tabs opening at once get the same
        conversation instead of two (a race the original had).
        """
        clean_subject = _clean_text(subject, field="subject", max_length=255)
        with transaction.atomic():
            ChatVisitor.objects.select_for_update().filter(pk=visitor.pk).first()
            existing = (
                ChatConversation.objects.filter(visitor=visitor, deleted_at__isnull=True)
                .exclude(status=ChatConversation.STATUS_CLOSED)
                .order_by("-created_at", "-id")
                .first()
            )
            if existing is not None:
                return existing
            number = self._next_chat_number()
            conversation = ChatConversation(
                widget_id=visitor.widget_id,
                visitor=visitor,
                number=number,
                chat_id=f"C{number}",
                subject=clean_subject,
                status=ChatConversation.STATUS_OPEN,
            )
            conversation.full_clean(validate_unique=False)
            conversation.save()
            events.publish_on_commit(
                events.ConversationOpened(
                    conversation=conversation.external_id, seq=0, chat_id=conversation.chat_id
                )
            )
        return conversation

    @staticmethod
    def _next_chat_number() -> int:
        """Next chat number, gap-free and unique under concurrent openers.

        PostgreSQL: a transaction-scoped advisory lock serialises allocators until
        commit, so ``max + 1`` can't be read twice. SQLite: transactions begin
        IMMEDIATE (settings), which already serialises every writer.
        """
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_chat_number_lock_id()])
        last = ChatConversation.objects.aggregate(m=Max("number"))["m"]
        return FIRST_CHAT_NUMBER if last is None else last + 1

    # ----------------------------------------------------------------- messages

    def send_visitor_message(
        self,
        *,
        conversation: ChatConversation,
        visitor: ChatVisitor,
        body: str,
        client_id: str | None = None,
    ) -> SendResult:
        """A visitor writes; writing into a closed conversation reopens it."""
        if conversation.visitor_id != visitor.pk:
            raise NotAllowed("This conversation belongs to another visitor.")
        text = self._clean_body(body)
        client_id = self._clean_client_id(client_id)
        with transaction.atomic():
            conv = self._lock(conversation)
            dup, wrote_before = self._send_checks(conv, "visitor", visitor.pk, client_id)
            if dup:
                return SendResult(dup, False)
            if conv.status == ChatConversation.STATUS_CLOSED:
                self._set_status(conv, ChatConversation.STATUS_OPEN)
                self._append(conv, sender_type="system", body="The visitor reopened the chat.")
            first = not wrote_before
            message = self._append(
                conv,
                sender_type="visitor",
                sender_id=visitor.pk,
                body=text,
                client_id=client_id,
                sender_name=visitor.display_name,
            )
            if first:
                notifications.on_first_visitor_message(conv)
            self._auto_reply_if_offline(conv)
        self._sync(conversation, conv)
        return SendResult(message, True)

    def _auto_reply_if_offline(self, conv: ChatConversation) -> None:
        """One offline auto-reply per conversation when nobody can answer now.

        Runs under the conversation's row lock, so concurrent visitor sends can't
        both decide they are first (the original's check-then-insert raced).
        """
        widget = conv.widget
        if not widget.offline_message:
            return
        if widget.is_within_business_hours() and presence.agents_online(widget) > 0:
            return
        if conv.messages.filter(sender_type="system", client_id=AUTO_REPLY_CLIENT_ID).exists():
            return
        self._append(
            conv, sender_type="system", body=widget.offline_message, client_id=AUTO_REPLY_CLIENT_ID
        )

    def send_agent_message(
        self,
        *,
        conversation: ChatConversation,
        agent: AbstractBaseUser,
        body: str,
        client_id: str | None = None,
    ) -> SendResult:
        """An agent replies; an unassigned conversation becomes theirs (as in the original)."""
        if not agent.is_active:
            raise NotAllowed("Inactive agents cannot reply.")
        text = self._clean_body(body)
        client_id = self._clean_client_id(client_id)
        with transaction.atomic():
            conv = self._lock(conversation)
            dup, _ = self._send_checks(conv, "user", agent.pk, client_id)
            if dup:
                return SendResult(dup, False)
            if conv.status == ChatConversation.STATUS_CLOSED:
                raise ConversationClosed("This chat is closed; reopen it to reply.")
            if conv.user_assigned_id is None:
                self._assign(conv, agent, by=agent)
            message = self._append(
                conv,
                sender_type="user",
                sender_id=agent.pk,
                body=text,
                client_id=client_id,
                sender_name=agent_display_name(agent),
            )
            notifications.on_agent_message(message)
        self._sync(conversation, conv)
        return SendResult(message, True)

    def send_system_message(
        self, *, conversation: ChatConversation, body: str, internal: bool = False
    ) -> ChatMessage:
        text = self._clean_body(body)
        with transaction.atomic():
            conv = self._lock(conversation)
            message = self._append(conv, sender_type="system", body=text, internal=internal)
        self._sync(conversation, conv)
        return message

    def mark_read(
        self, *, conversation: ChatConversation, reader: str, up_to_seq: int | None = None
    ) -> int:
        """Mark the other side's messages read up to ``up_to_seq`` (default: all).

        ``reader`` is "visitor" (reads agent messages) or "user" (reads visitor
        messages). Returns how many messages changed; no event when none did.
        """
        if reader not in {"visitor", "user"}:
            raise ValidationError({"reader": "Must be 'visitor' or 'user'."}, code="invalid")
        if up_to_seq is not None and up_to_seq < 0:
            raise ValidationError({"up_to_seq": "Must not be negative."}, code="invalid")
        other = "user" if reader == "visitor" else "visitor"
        with transaction.atomic():
            limit = conversation.last_seq if up_to_seq is None else up_to_seq
            changed = ChatMessage.objects.filter(
                conversation=conversation, sender_type=other, read_at__isnull=True, seq__lte=limit
            ).update(read_at=timezone.now())
            if changed:
                events.publish_on_commit(
                    events.ReadReceipt(
                        conversation=conversation.external_id,
                        seq=conversation.last_seq,
                        reader=reader,  # type: ignore[arg-type]
                        up_to_seq=limit,
                    )
                )
        return changed

    # ------------------------------------------------------------ agent actions

    def assign_conversation(
        self,
        *,
        conversation: ChatConversation,
        agent: AbstractBaseUser | None,
        by: AbstractBaseUser,
    ) -> ChatConversation:
        """Assign to ``agent`` (``None`` unassigns), leaving a system message."""
        if agent is not None and not agent.is_active:
            raise NotAllowed("Chats can only be assigned to active agents.")
        with transaction.atomic():
            conv = self._lock(conversation)
            if conv.user_assigned_id == (agent.pk if agent else None):
                return conv
            self._assign(conv, agent, by=by)
        self._sync(conversation, conv)
        return conversation

    def close_conversation(
        self, *, conversation: ChatConversation, by: AbstractBaseUser | None
    ) -> ChatConversation:
        return self._change_status(
            conversation, ChatConversation.STATUS_CLOSED, "This chat was closed.", by
        )

    def mark_pending(
        self, *, conversation: ChatConversation, by: AbstractBaseUser | None
    ) -> ChatConversation:
        return self._change_status(
            conversation, ChatConversation.STATUS_PENDING, "This chat was marked pending.", by
        )

    def reopen_conversation(
        self, *, conversation: ChatConversation, by: AbstractBaseUser | None
    ) -> ChatConversation:
        return self._change_status(
            conversation, ChatConversation.STATUS_OPEN, "This chat was reopened.", by
        )

    def delete_conversation(
        self, *, conversation: ChatConversation, by: AbstractBaseUser
    ) -> ChatConversation:
        """Soft-delete: gone from the inbox and the widget, restorable by an agent."""
        with transaction.atomic():
            conv = self._lock(conversation)
            if conv.deleted_at is not None:
                raise NotAllowed(f"Chat {conv.chat_id} is already deleted.")
            conv.deleted_at = timezone.now()
            ChatConversation.objects.filter(pk=conv.pk).update(deleted_at=conv.deleted_at)
            # Open sockets of the visitor (and of agents who may not see deleted
            # chats) lose it now, not when they next reconnect.
            revocation.conversation_changed(conv.external_id, reason="conversation deleted")
            self._append(
                conv,
                sender_type="system",
                body=f"Deleted by {agent_display_name(by)}.",
                internal=True,
            )
        conversation.deleted_at = conv.deleted_at
        self._sync(conversation, conv)
        return conversation

    def restore_conversation(
        self, *, conversation: ChatConversation, by: AbstractBaseUser
    ) -> ChatConversation:
        with transaction.atomic():
            conv = self._lock(conversation)
            if conv.deleted_at is None:
                raise NotAllowed(f"Chat {conv.chat_id} is not deleted.")
            ChatConversation.objects.filter(pk=conv.pk).update(deleted_at=None)
            self._append(
                conv,
                sender_type="system",
                body=f"Restored by {agent_display_name(by)}.",
                internal=True,
            )
        conversation.deleted_at = None
        self._sync(conversation, conv)
        return conversation

    def promote_visitor_to_person(
        self, *, visitor: ChatVisitor, by: AbstractBaseUser | None
    ) -> Person:
        """Link the visitor to the person with their email, or create that person.

        Promoting twice returns the already linked person.
        """
        with transaction.atomic():
            locked = ChatVisitor.objects.select_for_update().get(pk=visitor.pk)
            if locked.person_id:
                person = Person.objects.get(pk=locked.person_id)
            else:
                person = self._find_or_create_person(locked, by)
                ChatVisitor.objects.filter(pk=locked.pk).update(person=person)
                for conv in locked.conversations.all():
                    self._append(
                        self._lock(conv),
                        sender_type="system",
                        body=f"Visitor linked to person {person.name}.",
                        internal=True,
                    )
            visitor.person = person
            visitor.person_id = person.pk
        return person

    def convert_to_lead(self, *, conversation: ChatConversation, by: AbstractBaseUser) -> Lead:
        """Create a Lead (source chat) with the transcript as a note; refuse a second time."""
        with transaction.atomic():
            conv = self._lock(conversation)
            if conv.lead_id:
                raise AlreadyConverted(f"Chat {conv.chat_id} was already converted to a lead.")
            visitor = ChatVisitor.objects.select_for_update().get(pk=conv.visitor_id)
            person = None
            if visitor.person_id:
                person = Person.objects.get(pk=visitor.person_id)
            elif visitor.name or visitor.email:
                person = self.promote_visitor_to_person(visitor=visitor, by=by)
                conv = self._lock(conversation)  # promotion appended to it: re-read last_seq
            lead = Lead(
                title=self._lead_title(conv, visitor),
                description=conv.subject,
                person=person,
                organisation=person.organisation if person else None,
                owner=by,
                source="chat",
                team=conv.widget.team,
            )
            lead.full_clean()
            lead.save()
            Note.objects.create(lead=lead, author=by, content=self._transcript(conv, visitor))
            conv.lead = lead
            ChatConversation.objects.filter(pk=conv.pk).update(lead=lead)
            self._append(
                conv, sender_type="system", body=f"Converted to lead “{lead.title}”.", internal=True
            )
        self._sync(conversation, conv)
        conversation.lead = lead
        return lead

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _lead_title(conv: ChatConversation, visitor: ChatVisitor) -> str:
        """ "Ann Lee (ann@example.com) · chat C1001": whom and where it came from."""
        who = " ".join(p for p in (visitor.name, visitor.email and f"({visitor.email})") if p)
        suffix = f" · chat {conv.chat_id}"
        who = who or "Chat visitor"
        limit = Lead._meta.get_field("title").max_length - len(suffix)
        if len(who) > limit:
            who = who[: limit - 1] + "…"
        return who + suffix

    @staticmethod
    def _clean_body(body: str | None) -> str:
        if not isinstance(body, str):
            raise ValidationError({"body": "A message must be text."}, code="invalid")
        text = body.strip()
        if not text:
            raise ValidationError({"body": "A message can't be empty."}, code="empty")
        limit = max_body_length()
        if len(text) > limit:
            raise ValidationError(
                {"body": f"A message can have at most {limit} characters (it has {len(text)})."},
                code="too_long",
            )
        if "\x00" in text:
            raise ValidationError(
                {"body": "A message can't contain NUL characters."}, code="invalid"
            )
        return text

    @staticmethod
    def _clean_client_id(client_id: str | None) -> str | None:
        if client_id is None or client_id == "":
            return None
        if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
            raise ValidationError(
                {"client_id": "Must be 1 to 64 letters, digits or . _ : - characters."},
                code="invalid",
            )
        return client_id

    @staticmethod
    def _lock(conversation: ChatConversation) -> ChatConversation:
        """Lock the conversation row: it serialises seq allocation and status changes.

        ``of=("self",)``: the widget joined in must not be locked too, or every send
        on one widget would queue behind the others.
        """
        return (
            ChatConversation.objects.select_for_update(of=("self",))
            .select_related("widget")
            .get(pk=conversation.pk)
        )

    @staticmethod
    def _send_checks(
        conv: ChatConversation, sender_type: str, sender_id: int, client_id: str | None
    ) -> tuple[ChatMessage | None, bool]:
        """(the message an earlier try with this client_id stored, has this side written?)

        One statement for both, run after the lock so that (in READ COMMITTED) it sees
        what a concurrent try committed while this one waited for the row.
        """
        mine = ChatMessage.objects.filter(conversation=OuterRef("pk"), sender_type=sender_type)
        row = (
            ChatConversation.objects.filter(pk=conv.pk)
            .annotate(
                wrote=Exists(mine),
                duplicate_id=(
                    Subquery(mine.filter(sender_id=sender_id, client_id=client_id).values("pk")[:1])
                    if client_id
                    else Value(None, output_field=BigIntegerField())
                ),
            )
            .values("wrote", "duplicate_id")
            .get()
        )
        dup = ChatMessage.objects.get(pk=row["duplicate_id"]) if row["duplicate_id"] else None
        return dup, row["wrote"]

    @staticmethod
    def _sync(target: ChatConversation, source: ChatConversation) -> None:
        """Copy the locked row's new state onto the caller's instance."""
        for field in ("status", "last_seq", "last_message_at", "closed_at", "user_assigned_id"):
            setattr(target, field, getattr(source, field))
        if source.user_assigned_id is None:
            target.user_assigned = None
        elif "user_assigned" in source._state.fields_cache:
            target.user_assigned = source.user_assigned

    def _append(
        self,
        conv: ChatConversation,
        *,
        sender_type: str,
        body: str,
        sender_id: int | None = None,
        client_id: str | None = None,
        internal: bool = False,
        sender_name: str | None = None,
    ) -> ChatMessage:
        """Insert the next message of a locked conversation and queue its event."""
        now = timezone.now()
        conv.last_seq += 1
        conv.last_message_at = now
        message = ChatMessage(
            conversation=conv,
            seq=conv.last_seq,
            sender_type=sender_type,
            sender_id=sender_id,
            body=body,
            client_id=client_id,
            is_internal=internal,
            created_at=now,
        )
        try:
            # No savepoint: a failure here aborts the caller's whole transaction anyway.
            message.save(force_insert=True)
        except IntegrityError as exc:
            # Only reachable if a writer bypassed the row lock; surface it loudly.
            raise ChatError("The message could not be stored; please retry.") from exc
        ChatConversation.objects.filter(pk=conv.pk).update(
            last_seq=conv.last_seq, last_message_at=now, updated_at=now
        )
        payload = message_payload(message, sender_name=sender_name or "System")
        events.publish_on_commit(
            events.MessageCreated(conversation=conv.external_id, seq=message.seq, message=payload)
        )
        return message

    def _set_status(self, conv: ChatConversation, status: str) -> None:
        conv.status = status
        conv.closed_at = timezone.now() if status == ChatConversation.STATUS_CLOSED else None
        ChatConversation.objects.filter(pk=conv.pk).update(
            status=conv.status, closed_at=conv.closed_at
        )
        events.publish_on_commit(
            events.StatusChanged(
                conversation=conv.external_id,
                seq=conv.last_seq + 1,  # the system message that follows carries this seq
                status=status,  # type: ignore[arg-type]
            )
        )

    def _change_status(
        self,
        conversation: ChatConversation,
        status: str,
        note: str,
        by: AbstractBaseUser | None,
    ) -> ChatConversation:
        with transaction.atomic():
            conv = self._lock(conversation)
            if conv.status == status:
                raise NotAllowed(
                    f"Chat {conv.chat_id} is already {conv.get_status_display().lower()}."
                )
            self._set_status(conv, status)
            suffix = f" by {agent_display_name(by)}" if by is not None else ""
            self._append(conv, sender_type="system", body=note[:-1] + suffix + ".")
        self._sync(conversation, conv)
        return conversation

    def _assign(
        self, conv: ChatConversation, agent: AbstractBaseUser | None, *, by: AbstractBaseUser
    ) -> None:
        conv.user_assigned = agent  # type: ignore[assignment]
        ChatConversation.objects.filter(pk=conv.pk).update(user_assigned=agent)
        if agent is None:
            body = f"{agent_display_name(by)} unassigned the chat."
        elif agent.pk == by.pk:
            body = f"{agent_display_name(agent)} joined the chat."
        else:
            body = f"{agent_display_name(by)} assigned the chat to {agent_display_name(agent)}."
        self._append(conv, sender_type="system", body=body)
        events.publish_on_commit(
            events.Assigned(
                conversation=conv.external_id,
                seq=conv.last_seq,
                agent_id=agent.pk if agent else None,
                agent_name=agent_display_name(agent) if agent else None,
            )
        )

    @staticmethod
    def _find_or_create_person(visitor: ChatVisitor, by: AbstractBaseUser | None) -> Person:
        if visitor.email:
            email = Email.objects.select_related("person").filter(address__iexact=visitor.email)
            if found := email.order_by("-primary", "id").first():
                return found.person
        if not (visitor.name or visitor.email):
            raise NotAllowed("Ask the visitor for a name or email before promoting them.")
        first, _, last = (visitor.name or visitor.email.split("@")[0]).partition(" ")
        person = Person(
            first_name=first[:120],
            last_name=last.strip()[:120],
            owner=by,
            team=visitor.widget.team,
            description="Created from a chat visitor.",
        )
        person.full_clean()
        person.save()
        if visitor.email:
            Email.objects.create(person=person, address=visitor.email, primary=True)
        return person

    @staticmethod
    def _transcript(conv: ChatConversation, visitor: ChatVisitor) -> str:
        messages = list(conv.messages.filter(is_internal=False).order_by("seq"))
        names = sender_names(messages, visitor=visitor)
        lines = [f"Chat {conv.chat_id} transcript"]
        for m in messages:
            stamp = timezone.localtime(m.created_at).strftime("%Y-%m-%d %H:%M")
            lines.append(f"[{stamp}] {names[m.pk]}: {m.body}")
        return "\n".join(lines)


chat_service = ChatService()


def origins_from_text(text: str) -> list[str]:
    """Parse one origin per line (settings form, CLI) into normalised exact origins."""
    origins: list[str] = []
    errors: list[str] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:
            origin = normalise_origin(line)
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if origin not in origins:
            origins.append(origin)
    if errors:
        raise ValidationError(errors, code="invalid_origin")
    return origins
