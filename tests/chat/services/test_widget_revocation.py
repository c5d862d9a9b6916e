"""Widget writes that can narrow who may use a widget tell its open sockets to look again.

The socket side (what a recheck does) is tested with the sockets; here a listener
joins the widget's revocation group on the hub, as a visitor socket does, and must
receive one ``chat.recheck`` per narrowing write, after commit.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from crm.chat import events, revocation
from crm.chat.models import ChatWidget
from crm.chat.services import NotAllowed
from crm.core.models import Team
from tests.chat.conftest import ChatWorld
from tests.chat.hub_support import Listener

pytestmark = pytest.mark.django_db(transaction=True)


async def _rechecks(
    widget: ChatWidget, write: Callable[[], object], *, group: str | None = None
) -> list[dict]:
    listener = Listener()
    await listener.join(group or revocation.widget_group(widget.pk))
    await sync_to_async(write)()
    return await listener.drain()


def _assert_one_recheck(received: list[dict], reason: str) -> None:
    assert received == [{"type": "chat.recheck", "reason": reason, "ended": False}]


class WidgetRevocationTests:
    async def test_deactivating_tells_the_widgets_sockets(self, tworld: ChatWorld) -> None:
        received = await _rechecks(
            tworld.widget,
            lambda: tworld.service.update_widget(widget=tworld.widget, is_active=False),
        )
        _assert_one_recheck(received, "widget changed")

    async def test_a_team_change_also_tells_every_agent_socket(self, tworld: ChatWorld) -> None:
        def move() -> None:
            team = Team.objects.create(name="Support")
            tworld.service.update_widget(widget=tworld.widget, team=team)

        received = await _rechecks(tworld.widget, move, group=events.INBOX_GROUP)
        _assert_one_recheck(received, "widget changed")

    async def test_a_new_key_tells_the_widgets_sockets(self, tworld: ChatWorld) -> None:
        received = await _rechecks(
            tworld.widget, lambda: tworld.service.regenerate_public_key(widget=tworld.widget)
        )
        _assert_one_recheck(received, "widget key changed")

    async def test_deleting_tells_the_widgets_sockets(self, tworld: ChatWorld) -> None:
        received = await _rechecks(
            tworld.widget, lambda: tworld.service.delete_widget(widget=tworld.widget)
        )
        _assert_one_recheck(received, "widget deleted")

    async def test_purging_tells_the_widgets_sockets(self, tworld: ChatWorld) -> None:
        await sync_to_async(tworld.service.delete_widget)(widget=tworld.widget)
        received = await _rechecks(
            tworld.widget, lambda: tworld.service.purge_widget(widget=tworld.widget)
        )
        _assert_one_recheck(received, "widget purged")

    async def test_restoring_and_other_widgets_writes_send_nothing(self, tworld: ChatWorld) -> None:
        await sync_to_async(tworld.service.delete_widget)(widget=tworld.widget)

        def writes() -> None:
            tworld.service.restore_widget(widget=tworld.widget)
            tworld.service.update_widget(widget=tworld.other_widget, is_active=False)
            tworld.service.create_widget(name="Brand new")

        assert await _rechecks(tworld.widget, writes) == []

    async def test_nothing_is_sent_for_a_rolled_back_delete(self, tworld: ChatWorld) -> None:
        def rolled_back() -> None:
            with pytest.raises(RuntimeError), transaction.atomic():
                tworld.service.delete_widget(widget=tworld.widget)
                raise RuntimeError("abort")

        assert await _rechecks(tworld.widget, rolled_back) == []
        assert await ChatWidget.objects.filter(deleted_at__isnull=True).acount() == 2

    async def test_a_refused_write_sends_nothing(self, tworld: ChatWorld) -> None:
        await sync_to_async(tworld.service.delete_widget)(widget=tworld.widget)

        def refused() -> None:
            with pytest.raises(NotAllowed, match="restore it first"):
                tworld.service.regenerate_public_key(widget=tworld.widget)

        assert await _rechecks(tworld.widget, refused) == []
