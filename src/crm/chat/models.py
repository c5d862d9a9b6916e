"""The five chat models of the original module, plus what lossless realtime needs.

No method here writes: every write goes through ``crm.chat.services.ChatService``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
import zoneinfo
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.conf import crm_settings, public_url, table_name
from crm.core.models import Lead, Person, Team

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLOR = "#2563eb"


def new_public_key() -> str:
    """64 characters from ``secrets``: unguessable, URL-safe, fits the spec's column."""
    return secrets.token_hex(32)


def new_visitor_token() -> str:
    return secrets.token_urlsafe(48)  # 64 characters


def hash_token(token: str) -> str:
    """Visitor tokens are stored as SHA-256 digests.

    A database leak then gives no usable tokens, and lookup stays one indexed
    equality on the digest, so its timing does not depend on how much of a
    guessed token is right.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalise_origin(value: str) -> str:
    """Return ``scheme://host[:port]`` for an exact origin, or raise ValidationError."""
    raw = value.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValidationError(_("%(v)s is not a valid origin."), params={"v": raw}) from None
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.path not in {"", "/"}
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or "*" in raw
    ):
        raise ValidationError(
            _("%(v)s is not an exact origin like https://www.example.com (no path or wildcard)."),
            params={"v": raw},
        )
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def validate_origins(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(_("Allowed origins must be a list of origins."))
    for origin in value:
        if normalise_origin(origin) != origin:
            raise ValidationError(
                _("%(v)s must be written as %(n)s."),
                params={"v": origin, "n": normalise_origin(origin)},
            )


DEFAULT_OFFLINE_MESSAGE = "We're offline right now, we'll reply by email shortly."
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            _("%(v)s is not a time zone name like Europe/Berlin."), params={"v": value}
        ) from None


def validate_business_hours(value: Any) -> None:
    """``{"mon": [["09:00", "17:00"], …], …}``: weekday -> list of [start, end) ranges."""
    if not isinstance(value, dict):
        raise ValidationError(_("Business hours must map weekdays to time ranges."))
    for day, ranges in value.items():
        if day not in WEEKDAYS:
            raise ValidationError(_("%(d)s is not a weekday (mon … sun)."), params={"d": day})
        if not isinstance(ranges, list):
            raise ValidationError(_("Hours of %(d)s must be a list of ranges."), params={"d": day})
        for pair in ranges:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(t, str) and _HHMM.match(t) for t in pair)
                or pair[0] >= pair[1]
            ):
                raise ValidationError(
                    _("%(d)s: each range is [start, end] as HH:MM with start before end."),
                    params={"d": day},
                )


class ChatWidget(models.Model):
    POSITIONS = (("bottom-right", _("Bottom right")), ("bottom-left", _("Bottom left")))

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(
        Team, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("team")
    )
    public_key = models.CharField(
        max_length=64, unique=True, default=new_public_key, editable=False
    )
    name = models.CharField(_("name"), max_length=120)
    welcome_message = models.CharField(_("welcome message"), max_length=500, blank=True)
    color = models.CharField(
        _("colour"),
        max_length=7,
        default=DEFAULT_COLOR,
        validators=[RegexValidator(COLOR_RE, _("Enter a colour as #RRGGBB, e.g. #2563eb."))],
    )
    position = models.CharField(
        _("position"), max_length=16, choices=POSITIONS, default="bottom-right"
    )
    allowed_origins = models.JSONField(
        _("allowed origins"),
        default=list,
        blank=True,
        validators=[validate_origins],
        help_text=_("Exact origins allowed to embed the widget; empty allows any site."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    offline_message = models.CharField(
        _("offline auto-reply"),
        max_length=500,
        default=DEFAULT_OFFLINE_MESSAGE,
        blank=True,
        help_text=_("Sent once per chat when nobody is online; empty turns it off."),
    )
    business_hours = models.JSONField(
        _("business hours"),
        default=dict,
        blank=True,
        validators=[validate_business_hours],
        help_text=_('e.g. {"mon": [["09:00", "17:30"]], …}; empty means always open.'),
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone]
    )
    missed_chat_minutes = models.PositiveIntegerField(
        _("missed chat after (minutes)"),
        default=5,
        help_text=_("Email the team when no agent has replied within this time; 0 turns it off."),
    )
    # Soft delete: the widget stops serving at once but its visitors, conversations
    # and messages stay in the inbox until it is restored or purged. No index: the
    # public lookup goes by the unique public_key, and widgets are few.
    deleted_at = models.DateTimeField(_("deleted"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = table_name("chat_widgets")
        ordering = ["name", "id"]
        verbose_name = _("chat widget")
        verbose_name_plural = _("chat widgets")
        default_permissions = ()
        permissions = [("manage_widgets", "Can manage crm chat widgets")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def loader_url(self) -> str:
        return f"{public_url()}/p/chat/{self.public_key}.js"

    def embed_snippet(self) -> str:
        """The spec's paste-in snippet, pointing at this CRM's public URL."""
        return (
            "<!-- crm-chat widget -->\n"
            "<script>(function(){var s=document.createElement('script');s.async=1;"
            f"s.src='{self.loader_url()}';document.head.appendChild(s);}})();</script>"
        )

    def is_within_business_hours(self, at: datetime | None = None) -> bool:
        """True when the widget has no hours set, or ``at`` (default now) falls in them."""
        if not self.business_hours:
            return True
        local = (at or timezone.now()).astimezone(zoneinfo.ZoneInfo(self.time_zone))
        hhmm = local.strftime("%H:%M")
        ranges = self.business_hours.get(WEEKDAYS[local.weekday()], [])
        return any(start <= hhmm < end for start, end in ranges)

    def origin_allowed(self, origin: str | None) -> bool:
        """True when ``origin`` may use this widget; an empty allow-list admits any."""
        if not self.allowed_origins:
            return True
        if not origin:
            return False
        try:
            return normalise_origin(origin) in self.allowed_origins
        except ValidationError:
            return False


class ChatVisitor(models.Model):
    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    widget = models.ForeignKey(ChatWidget, on_delete=models.CASCADE, related_name="visitors")
    # SHA-256 of the token; the token itself lives only in the visitor's browser.
    visitor_token = models.CharField(max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=255, blank=True)
    email = models.EmailField(_("email"), max_length=254, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    country_code = models.CharField(_("country"), max_length=2, blank=True)
    current_url = models.CharField(_("current page"), max_length=2048, blank=True)
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)
    person = models.ForeignKey(
        Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="chat_visitors"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = table_name("chat_visitors")
        verbose_name = _("chat visitor")
        verbose_name_plural = _("chat visitors")
        default_permissions = ()

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name_for_display(self.pk, self.name)

    @staticmethod
    def name_for_display(pk: int, name: str) -> str:
        """The visitor's name, or "Visitor #id" until they give one (rows read as values)."""
        return name or f"Visitor #{pk}"


class ChatConversation(models.Model):
    # Final, so they type as the literal values ``events.ConversationStatus`` names.
    STATUS_OPEN: Final = "open"
    STATUS_PENDING: Final = "pending"
    STATUS_CLOSED: Final = "closed"
    STATUSES = (
        (STATUS_OPEN, _("Open")),
        (STATUS_PENDING, _("Pending")),
        (STATUS_CLOSED, _("Closed")),
    )

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    chat_id = models.CharField(_("chat ID"), max_length=20, unique=True)
    # Integer behind chat_id ("C" + number): allocated gap-free by ChatService.
    number = models.PositiveIntegerField(unique=True)
    widget = models.ForeignKey(ChatWidget, on_delete=models.CASCADE, related_name="conversations")
    visitor = models.ForeignKey(ChatVisitor, on_delete=models.CASCADE, related_name="conversations")
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=STATUSES, default=STATUS_OPEN)
    user_assigned = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_chats",
        verbose_name=_("assigned agent"),
    )
    last_message_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    lead = models.ForeignKey(
        Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="chat_conversations"
    )
    # Highest message seq allocated; the row lock on it serialises senders.
    last_seq = models.PositiveIntegerField(default=0)
    # Soft delete: hidden from the inbox and the visitor, restorable by an agent.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = table_name("chat_conversations")
        verbose_name = _("chat conversation")
        verbose_name_plural = _("chat conversations")
        default_permissions = ()
        permissions = [
            ("view_chat", "Can view crm chat"),
            ("view_all_chats", "Can view every crm chat, not only unassigned and own"),
            ("reply_chat", "Can reply crm chat"),
            ("delete_chat", "Can delete crm chat"),
        ]
        indexes = [
            # selectors.conversation_list: a status tab ordered by newest activity.
            models.Index(fields=["status", "-last_message_at"], name="crm_chat_conv_inbox_idx"),
            # services.open_conversation: the visitor's newest not-closed conversation.
            models.Index(fields=["visitor", "status"], name="crm_chat_conv_visitor_idx"),
        ]

    def __str__(self) -> str:
        return self.chat_id

    def get_absolute_url(self) -> str:
        return reverse("crm-chat-show", args=[self.external_id])


class ChatMessage(models.Model):
    SENDER_USER, SENDER_VISITOR, SENDER_SYSTEM = "user", "visitor", "system"
    SENDER_TYPES = (
        (SENDER_USER, _("Agent")),
        (SENDER_VISITOR, _("Visitor")),
        (SENDER_SYSTEM, _("System")),
    )

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(
        ChatConversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    sender_type = models.CharField(max_length=10, choices=SENDER_TYPES)
    # Agent user id or visitor id depending on sender_type; null for system.
    sender_id = models.BigIntegerField(null=True, blank=True)
    body = models.TextField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    # Internal system notes (assignment, lead conversion) are shown to agents only.
    is_internal = models.BooleanField(default=False)
    read_at = models.DateTimeField(null=True, blank=True)
    # Set by the service to the same instant as the conversation's last_message_at.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = table_name("chat_messages")
        ordering = ["conversation_id", "seq"]
        verbose_name = _("chat message")
        verbose_name_plural = _("chat messages")
        default_permissions = ()
        constraints = [
            # Messages since a seq (polling, resume) use this unique index too.
            models.UniqueConstraint(fields=["conversation", "seq"], name="crm_chat_msg_seq_uniq"),
            # A retried send (same client_id from the same sender) never makes a second row.
            models.UniqueConstraint(
                fields=["conversation", "sender_type", "sender_id", "client_id"],
                condition=Q(client_id__isnull=False),
                name="crm_chat_msg_client_uniq",
            ),
        ]
        indexes = [
            # selectors unread counts: the other side's messages not yet read.
            models.Index(
                fields=["conversation", "sender_type"],
                condition=Q(read_at__isnull=True),
                name="crm_chat_msg_unread_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq}"


class ChatVisitorPageView(models.Model):
    visitor = models.ForeignKey(ChatVisitor, on_delete=models.CASCADE, related_name="page_views")
    url = models.CharField(max_length=2048)
    title = models.CharField(max_length=512, blank=True)
    referrer = models.CharField(max_length=2048, blank=True)
    viewed_at = models.DateTimeField()

    class Meta:
        db_table = table_name("chat_visitor_page_views")
        verbose_name = _("page view")
        verbose_name_plural = _("page views")
        default_permissions = ()
        indexes = [
            # selectors.visitor_page_views: a visitor's trail, newest first.
            models.Index(fields=["visitor", "-viewed_at"], name="crm_chat_pv_trail_idx"),
        ]

    def __str__(self) -> str:
        return self.url


def max_body_length() -> int:
    return int(crm_settings.CRM_CHAT_MAX_BODY)
