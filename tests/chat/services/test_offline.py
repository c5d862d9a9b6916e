"""The offline auto-reply and business hours."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connections

from crm.chat import presence
from crm.chat.models import DEFAULT_OFFLINE_MESSAGE, ChatMessage
from crm.chat.services import AUTO_REPLY_CLIENT_ID
from tests.chat.conftest import ChatWorld

HOURS = {"mon": [["09:00", "17:00"]], "tue": [["09:00", "12:00"], ["13:00", "17:00"]]}


@pytest.fixture(autouse=True)
def _no_one_online() -> None:
    cache.clear()


def _auto_replies(conv) -> list[str]:  # type: ignore[no-untyped-def]
    return list(
        ChatMessage.objects.filter(conversation=conv, client_id=AUTO_REPLY_CLIENT_ID).values_list(
            "body", flat=True
        )
    )


class OfflineAutoReplyTests:
    def test_it_replies_once_per_conversation_when_nobody_is_online(self, world: ChatWorld):
        world.service.update_widget(widget=world.widget, offline_message=DEFAULT_OFFLINE_MESSAGE)
        conv = world.conversation()
        for body in ("hello?", "anyone?"):
            world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body=body)
        assert _auto_replies(conv) == [DEFAULT_OFFLINE_MESSAGE]
        assert list(conv.messages.values_list("sender_type", flat=True)) == [
            "visitor", "system", "visitor",
        ]  # fmt: skip

    def test_it_stays_quiet_while_an_agent_of_the_widgets_team_is_online(self, world):
        world.service.update_widget(widget=world.widget, offline_message="Away!")
        presence.mark_agent_online(world.employee.pk)
        conv = world.conversation()
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
        assert _auto_replies(conv) == []

    def test_presence_is_per_team(self, world: ChatWorld):
        from crm.core.models import Team

        support, sales = Team.objects.create(name="Support"), Team.objects.create(name="Sales")
        sales.members.add(world.employee)
        world.service.update_widget(widget=world.widget, team=support, offline_message="Away!")
        presence.mark_agent_online(world.employee.pk)  # online, but in another team
        assert presence.agents_online(world.widget) == 0
        conv = world.conversation()
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
        assert _auto_replies(conv) == ["Away!"]
        support.members.add(world.owner)
        cache.clear()  # the widget's agent list is cached briefly
        presence.mark_agent_online(world.owner.pk)
        assert presence.agents_online(world.widget) == 1

    def test_an_empty_message_turns_it_off(self, world: ChatWorld):
        conv = world.conversation()  # the shared world's widget has no auto-reply
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
        assert _auto_replies(conv) == []


class BusinessHoursTests:
    @pytest.mark.parametrize(
        ("zone", "utc_moment", "open_"),
        [
            # Monday 2026-11-23, 08:30 UTC = 09:30 in Berlin (open) and 03:30 in New York.
            ("Europe/Berlin", datetime(2026, 11, 23, 8, 30, tzinfo=UTC), True),
            ("America/New_York", datetime(2026, 11, 23, 8, 30, tzinfo=UTC), False),
            # Monday 16:30 UTC = 17:30 Berlin (closed) and 11:30 New York (open).
            ("Europe/Berlin", datetime(2026, 11, 23, 16, 30, tzinfo=UTC), False),
            ("America/New_York", datetime(2026, 11, 23, 16, 30, tzinfo=UTC), True),
            # Tuesday lunch break in Berlin: 11:15 UTC = 12:15.
            ("Europe/Berlin", datetime(2026, 11, 24, 11, 15, tzinfo=UTC), False),
            # Wednesday has no hours at all.
            ("Europe/Berlin", datetime(2026, 11, 25, 10, 0, tzinfo=UTC), False),
        ],
    )
    def test_hours_are_read_in_the_widgets_time_zone(self, world, zone, utc_moment, open_):
        world.service.update_widget(widget=world.widget, business_hours=HOURS, time_zone=zone)
        with time_machine.travel(utc_moment, tick=False):
            assert world.widget.is_within_business_hours() is open_

    def test_outside_hours_the_auto_reply_applies_even_with_agents_online(self, world):
        world.service.update_widget(
            widget=world.widget, business_hours=HOURS, time_zone="Europe/Berlin",
            offline_message="Closed for today.",
        )  # fmt: skip
        presence.mark_agent_online(world.employee.pk)
        with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=False):
            conv = world.conversation()
            world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="hi")
        assert _auto_replies(conv) == ["Closed for today."]

    @pytest.mark.parametrize(
        ("hours", "zone"),
        [
            ({"funday": [["09:00", "17:00"]]}, "UTC"),
            ({"mon": [["17:00", "09:00"]]}, "UTC"),
            ({"mon": [["9:00", "17:00"]]}, "UTC"),
            ({"mon": "09:00-17:00"}, "UTC"),
            ({}, "Mars/Olympus_Mons"),
        ],
    )
    def test_invalid_hours_or_zones_are_refused(self, world: ChatWorld, hours, zone):
        with pytest.raises(ValidationError):
            world.service.update_widget(widget=world.widget, business_hours=hours, time_zone=zone)
        world.widget.refresh_from_db()
        assert world.widget.business_hours == {} and world.widget.time_zone == "UTC"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_sends_get_exactly_one_auto_reply(tworld: ChatWorld) -> None:
    tworld.service.update_widget(widget=tworld.widget, offline_message="Away!")
    conv = tworld.conversation()
    barrier = threading.Barrier(20, timeout=30)

    def send(i: int) -> None:
        try:
            barrier.wait()
            tworld.service.send_visitor_message(
                conversation=conv, visitor=tworld.visitor, body=f"m{i}", client_id=f"c{i}"
            )
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        for f in [pool.submit(send, i) for i in range(20)]:
            f.result(timeout=60)
    assert _auto_replies(conv) == ["Away!"]
    assert ChatMessage.objects.filter(conversation=conv).count() == 21
