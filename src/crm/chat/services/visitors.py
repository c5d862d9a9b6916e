"""Visitors: who is writing, from where, and which pages they looked at.

Rules that live here: a visitor token is only valid on the widget that issued it
(an unknown one is refused, never silently replaced); the database keeps only
the token's digest; ``last_seen_at`` is written at most every
``SEEN_RESOLUTION`` so polling doesn't write on every request; URLs stored for
a visitor are http(s) only (``inputs.clean_http_url``); a page view that repeats
the latest URL bumps its time instead of adding a row. None of these writes
touch a conversation, so nothing here takes the conversation lock.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from crm.chat import geo
from crm.chat.models import (
    ChatVisitor,
    ChatVisitorPageView,
    ChatWidget,
    hash_token,
    new_visitor_token,
)
from crm.chat.services.errors import InvalidToken, NotAllowed
from crm.chat.services.inputs import clean_http_url
from crm.core.writes import write_transaction

# last_seen_at is refreshed at most this often, so polling doesn't write every time.
SEEN_RESOLUTION = timedelta(seconds=15)


def identify_visitor(
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
    current_url = clean_http_url(current_url, field="current_url")
    if token:
        visitor = ChatVisitor.objects.filter(widget=widget, visitor_token=hash_token(token)).first()
        if visitor is None:
            raise InvalidToken("This visitor token is not valid for this widget.")
        touch_visitor(
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
        changes["current_url"] = clean_http_url(current_url, field="current_url")
    if changes:
        changes.setdefault("last_seen_at", now)
        with write_transaction():  # on SQLite: queued with the process's other writers
            ChatVisitor.objects.filter(pk=visitor.pk).update(**changes)
        for field, value in changes.items():
            setattr(visitor, field, value)
    return visitor


def update_visitor_details(
    *, visitor: ChatVisitor, name: str | None = None, email: str | None = None
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
    *, visitor: ChatVisitor, url: str, title: str = "", referrer: str = ""
) -> ChatVisitorPageView | None:
    """Append to the visitor's page trail; a repeat of the latest URL only bumps its time.

    A page of a site the widget doesn't allow is refused (``NotAllowed``): the trail
    must not show pages a third party made up. Only http(s) URLs have an origin to
    check; anything else is invalid input (``ValidationError``), and an odd referrer
    is dropped, not refused (it is the host page's doing).
    """
    _check_page_origin(visitor, url)
    clean_url = clean_http_url(url, field="url")
    if not clean_url:
        return None
    clean_title = " ".join((title or "").split())[:512]
    try:
        clean_referrer = clean_http_url(referrer, field="referrer")
    except ValidationError:
        clean_referrer = ""  # an odd referrer is the host page's doing, not worth a 4xx
    now = timezone.now()
    with write_transaction():
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
        ChatVisitor.objects.filter(pk=visitor.pk).update(current_url=clean_url, last_seen_at=now)
        visitor.current_url, visitor.last_seen_at = clean_url, now
    return view


def _check_page_origin(visitor: ChatVisitor, url: str) -> None:
    widget = visitor.widget
    if not widget.allowed_origins:
        return
    try:
        parts = urlsplit((url or "").strip())
    except ValueError:
        return  # not a URL at all: clean_http_url refuses it as invalid input
    if parts.scheme in {"http", "https"} and not widget.origin_allowed(
        f"{parts.scheme}://{parts.netloc}"
    ):
        raise NotAllowed("Page views can only be recorded for the widget's allowed websites.")
