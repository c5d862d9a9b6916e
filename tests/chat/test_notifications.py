"""Chat emails through a real SMTP server (aiosmtpd on loopback) and a real `crm worker`."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from crm.chat.models import ChatVisitor
from crm.chat.notifications import widget_recipients
from crm.core.models import Team
from tests.chat.conftest import ChatWorld
from tests.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    """aiosmtpd handler keeping every accepted message; can hold DATA until released."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.hold = threading.Event()
        self.hold.set()  # not holding
        self.holding = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if not self.hold.is_set():
            self.holding.set()
            while not self.hold.is_set():  # bounded by the test's own timeouts
                await __import__("asyncio").sleep(0.05)
        message = email.message_from_bytes(envelope.content)
        message["X-Rcpt"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.messages]

    def wait_for(self, n: int, timeout: float = 30) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} emails, got {self.subjects()}")
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    inbox.hold.set()
    controller.stop()


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, smtp_port: int) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CRM_DATA_DIR": str(settings.DATA_DIR),
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "CRM_PUBLIC_URL": "https://crm.example.com",
        }
        self.env.pop("REDIS_URL", None)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crm.cli", "worker", "--id", "test-worker", "--interval", "0.1"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def worker(smtp) -> Iterator[Worker]:  # type: ignore[no-untyped-def]
    w = Worker(smtp[1])
    yield w
    w.stop()


def _owner_with_email(world: ChatWorld) -> None:
    world.owner.email = "olivia@crm.example"
    world.owner.save()


def _visitor_writes(world: ChatWorld, body: str = "Do you ship to Canada?") -> object:
    """The visitor's first message through the real public API (a visitor request)."""
    client = Client()
    key = world.widget.public_key
    headers = {"HTTP_X_CHAT_VISITOR_TOKEN": world.token}
    client.patch(
        f"/p/chat/{key}/api/visitor", {"name": "Ann", "email": "ann@example.org"},
        content_type="application/json", **headers,
    )  # fmt: skip
    conv = client.post(
        f"/p/chat/{key}/api/conversations", {}, content_type="application/json", **headers
    ).json()["conversation"]
    response = client.post(
        f"/p/chat/{key}/api/conversations/{conv['id']}/messages",
        {"body": body, "client_id": "c1"}, content_type="application/json", **headers,
    )  # fmt: skip
    assert response.status_code == 201
    return world.conversation()


class NotificationTests:
    def test_the_visitor_request_only_enqueues_and_the_worker_sends(self, tworld, smtp, worker):
        inbox, _ = smtp
        _owner_with_email(tworld)
        conv = _visitor_writes(tworld)
        # The request has returned: the email is a queued job, nothing was sent yet.
        assert inbox.messages == []
        assert DBTaskResult.objects.filter(task_path__endswith="send_new_chat_email").count() == 1
        worker.start()
        (mail,) = inbox.wait_for(1)
        assert mail["Subject"] == f"New chat request {conv.chat_id}"
        assert mail["X-Rcpt"] == "olivia@crm.example"
        body = mail.get_payload()
        assert "Do you ship to Canada?" in body and "Ann" in body and "ann@example.org" in body
        assert f"https://crm.example.com/crm/chat/{conv.external_id}/" in body

    def test_a_missed_chat_is_reported_when_no_agent_replied(self, tworld, smtp, worker):
        inbox, _ = smtp
        _owner_with_email(tworld)
        conv = _visitor_writes(tworld)
        worker.start()
        inbox.wait_for(1)
        # The missed-chat check waits the widget's 5 minutes; let that time pass.
        DBTaskResult.objects.filter(task_path__endswith="send_missed_chat_email").update(
            run_after=timezone.now() - timedelta(seconds=1)
        )
        second = inbox.wait_for(2)[1]
        assert second["Subject"] == f"Missed chat {conv.chat_id}"
        assert "Nobody has replied within 5 minutes" in second.get_payload()

    def test_an_answered_chat_is_not_reported_missed(self, tworld, smtp, worker):
        inbox, _ = smtp
        _owner_with_email(tworld)
        conv = _visitor_writes(tworld)
        tworld.service.send_agent_message(conversation=conv, agent=tworld.owner, body="Yes!")
        DBTaskResult.objects.filter(task_path__endswith="send_missed_chat_email").update(
            run_after=timezone.now() - timedelta(seconds=1)
        )
        worker.start()
        inbox.wait_for(1)
        deadline = time.monotonic() + 15
        while DBTaskResult.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).exists():
            assert time.monotonic() < deadline, "jobs did not finish"
            time.sleep(0.1)
        assert inbox.subjects() == [f"New chat request {conv.chat_id}"]

    def test_a_reply_to_a_visitor_who_left_goes_by_email(self, tworld, smtp, worker):
        inbox, _ = smtp
        conv = _visitor_writes(tworld)
        ChatVisitor.objects.filter(pk=tworld.visitor.pk).update(
            last_seen_at=timezone.now() - timedelta(minutes=10)
        )
        conv.visitor.refresh_from_db()
        tworld.service.send_agent_message(
            conversation=conv, agent=tworld.owner, body="We ship to Canada in 5 days."
        )
        worker.start()
        mail = next(m for m in inbox.wait_for(1) if m["X-Rcpt"] == "ann@example.org")
        assert mail["Subject"] == f"Reply from Main site ({conv.chat_id})"
        assert "We ship to Canada in 5 days." in mail.get_payload()

    def test_no_email_to_a_visitor_still_on_the_page(self, tworld):
        conv = _visitor_writes(tworld)  # seen just now
        tworld.service.send_agent_message(conversation=conv, agent=tworld.owner, body="Hi!")
        assert not DBTaskResult.objects.filter(
            task_path__endswith="send_offline_reply_email"
        ).exists()

    def test_a_worker_killed_mid_job_delivers_after_restart(self, tworld, smtp, worker):
        inbox, _ = smtp
        _owner_with_email(tworld)
        conv = _visitor_writes(tworld)
        inbox.hold.clear()  # the SMTP server stalls the first delivery
        worker.start()
        assert inbox.holding.wait(30), "the worker never started sending"
        worker.kill()  # SIGKILL while the job is running
        assert DBTaskResult.objects.filter(status="RUNNING").count() == 1
        inbox.hold.set()
        worker.start()  # same worker id: it requeues its own unfinished job
        mails = inbox.wait_for(1)
        assert [m["Subject"] for m in mails] == [f"New chat request {conv.chat_id}"]


def test_recipients_are_the_teams_owners_and_the_assignee(tworld: ChatWorld) -> None:
    world = tworld
    _owner_with_email(world)
    world.employee.email = "emma@crm.example"
    world.employee.save()
    assert widget_recipients(world.widget) == ["olivia@crm.example"]
    assert widget_recipients(world.widget, assignee_id=world.employee.pk) == [
        "emma@crm.example", "olivia@crm.example",
    ]  # fmt: skip
    team = Team.objects.create(name="Elsewhere")
    world.service.update_widget(widget=world.widget, team=team)
    assert widget_recipients(world.widget) == []  # Olivia isn't in that team
    team.members.add(world.owner)
    assert widget_recipients(world.widget) == ["olivia@crm.example"]


def test_jobs_of_a_chat_purged_before_they_ran_end_quietly(world: ChatWorld) -> None:
    """A queued email whose chat was purged with its widget sends nothing and raises nothing."""
    from django.core import mail

    from crm.chat.notifications import (
        send_missed_chat_email,
        send_new_chat_email,
        send_offline_reply_email,
    )

    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
    reply = world.service.send_agent_message(conversation=conv, agent=world.owner, body="hello")
    conv_pk, message_pk = conv.pk, reply.message.pk
    world.service.delete_widget(widget=world.widget)
    world.service.purge_widget(widget=world.widget)
    mail.outbox.clear()

    assert send_new_chat_email.call(conv_pk) == 0
    assert send_missed_chat_email.call(conv_pk) == 0
    assert send_offline_reply_email.call(message_pk) == 0
    assert mail.outbox == []
