"""Email about chats, sent in the background by `crm worker` (django-tasks, database backend).

Tasks are enqueued inside the same transaction as the chat write that causes them
(the task row is just another row), so a rolled-back write sends nothing and a
committed one can't lose its email. The worker sends; a failure is logged and
retried with backoff, and `crm worker` requeues tasks a killed worker left running.
Nothing here runs inside a visitor's request.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_tasks import task
from django_tasks.base import Task

from crm.chat import presence
from crm.chat.models import ChatConversation, ChatMessage, ChatWidget
from crm.conf import public_url
from crm.core.roles import OWNER

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
# Minutes to wait before attempt n+1 (1, 2, 4, 8, 16).
BACKOFF_MINUTES = (1, 2, 4, 8, 16)


def widget_recipients(widget: ChatWidget, *, assignee_id: int | None = None) -> list[str]:
    """Owners of the widget's team (every Owner when it has none) and the assignee."""
    User = get_user_model()
    owners = User.objects.filter(is_active=True, groups__name=OWNER).exclude(email="")
    if widget.team_id:
        owners = owners.filter(crm_teams=widget.team_id)
    emails = set(owners.values_list("email", flat=True))
    if assignee_id:
        emails |= set(
            User.objects.filter(pk=assignee_id, is_active=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
    return sorted(emails)


def _conversation_url(conversation: ChatConversation) -> str:
    return public_url() + reverse("crm-chat-show", args=[conversation.external_id])


def _send(subject: str, template: str, context: dict, recipients: list[str]) -> int:
    if not recipients:
        return 0
    body = render_to_string(template, context)
    return send_mail(subject, body, None, recipients, fail_silently=False)


def _retry_or_raise(task_obj: Task[..., int], attempt: int, *args: object) -> None:
    """Schedule the next attempt of a failed send, or give up loudly after the last."""
    if attempt >= MAX_ATTEMPTS:
        logger.error("giving up on %s%r after %d attempts", task_obj.name, args, attempt)
        raise
    delay = BACKOFF_MINUTES[min(attempt - 1, len(BACKOFF_MINUTES) - 1)]
    logger.warning(
        "%s%r failed (attempt %d); retrying in %d min", task_obj.name, args, attempt, delay
    )
    task_obj.using(run_after=timezone.now() + timedelta(minutes=delay)).enqueue(
        *args, attempt=attempt + 1
    )


@task()
def send_new_chat_email(conversation_id: int, attempt: int = 1) -> int:
    """ "New chat request" to the widget team's owners: the first visitor message."""
    conv = (
        ChatConversation.objects.select_related("visitor", "widget")
        .filter(pk=conversation_id)
        .first()
    )
    if conv is None or conv.deleted_at:
        return 0  # deleted, or purged with its widget, before the job ran
    first = conv.messages.filter(sender_type="visitor").order_by("seq").first()
    context = {"conversation": conv, "visitor": conv.visitor, "message": first,
               "url": _conversation_url(conv)}  # fmt: skip
    try:
        return _send(
            f"New chat request {conv.chat_id}",
            "crm_chat/email/new_chat.txt",
            context,
            widget_recipients(conv.widget, assignee_id=conv.user_assigned_id),
        )
    except Exception:
        _retry_or_raise(send_new_chat_email, attempt, conversation_id)
        return 0


@task()
def send_missed_chat_email(conversation_id: int, attempt: int = 1) -> int:
    """ "Missed chat" when no agent has replied by the widget's deadline."""
    conv = (
        ChatConversation.objects.select_related("visitor", "widget")
        .filter(pk=conversation_id)
        .first()
    )
    if conv is None or conv.deleted_at or conv.messages.filter(sender_type="user").exists():
        return 0  # answered (or deleted) in time: nothing was missed
    first = conv.messages.filter(sender_type="visitor").order_by("seq").first()
    context = {"conversation": conv, "visitor": conv.visitor, "message": first,
               "url": _conversation_url(conv), "minutes": conv.widget.missed_chat_minutes}  # fmt: skip
    try:
        return _send(
            f"Missed chat {conv.chat_id}",
            "crm_chat/email/missed_chat.txt",
            context,
            widget_recipients(conv.widget, assignee_id=conv.user_assigned_id),
        )
    except Exception:
        _retry_or_raise(send_missed_chat_email, attempt, conversation_id)
        return 0


@task()
def send_offline_reply_email(message_id: int, attempt: int = 1) -> int:
    """An agent's reply, by email, to a visitor who had left and gave their address."""
    message = (
        ChatMessage.objects.select_related("conversation__visitor", "conversation__widget")
        .filter(pk=message_id)
        .first()
    )
    if message is None:
        return 0  # purged with its widget before the job ran
    conv, visitor = message.conversation, message.conversation.visitor
    if not visitor.email:
        return 0
    agent = (
        get_user_model().objects.filter(pk=message.sender_id).first()
        if message.sender_id is not None
        else None
    )
    context = {"conversation": conv, "visitor": visitor, "message": message,
               "agent_name": (agent.get_full_name() or agent.get_username()) if agent else "Agent",
               "widget": conv.widget}  # fmt: skip
    try:
        return _send(
            f"Reply from {conv.widget.name} ({conv.chat_id})",
            "crm_chat/email/offline_reply.txt",
            context,
            [visitor.email],
        )
    except Exception:
        _retry_or_raise(send_offline_reply_email, attempt, message_id)
        return 0


# ------------------------------------------------------- called by ChatService


def on_first_visitor_message(conversation: ChatConversation) -> None:
    """Enqueue the new-chat email now and the missed-chat check for later."""
    send_new_chat_email.enqueue(conversation.pk)
    minutes = conversation.widget.missed_chat_minutes
    if minutes:
        send_missed_chat_email.using(run_after=timezone.now() + timedelta(minutes=minutes)).enqueue(
            conversation.pk
        )


def on_agent_message(message: ChatMessage) -> None:
    """Email the reply when the visitor has gone and left an email address."""
    visitor = message.conversation.visitor
    if visitor.email and not presence.visitor_is_online(visitor.last_seen_at):
        send_offline_reply_email.enqueue(message.pk)


def requeue_orphaned_tasks(*, worker_id: str, lease: timedelta) -> int:
    """Put back tasks a killed worker left "running": ours from before a restart, or
    any that has run longer than ``lease``. Returns how many were requeued.

    The update re-checks the status, so two workers starting at once can't both
    requeue (and later both run) the same task.
    """
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    stale_before = timezone.now() - lease
    requeued = 0
    for row in DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).only(
        "id", "worker_ids", "started_at"
    ):
        ours = bool(row.worker_ids) and row.worker_ids[-1] == worker_id
        stale = row.started_at is not None and row.started_at < stale_before
        if ours or stale:
            requeued += DBTaskResult.objects.filter(
                pk=row.pk, status=TaskResultStatus.RUNNING
            ).update(status=TaskResultStatus.READY, started_at=None)
    return requeued
