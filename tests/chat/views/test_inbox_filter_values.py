"""Inbox filters given values no filter link writes are ignored, never a 500.

``assigned`` and ``widget`` are row ids. A number beyond 64 bits used to reach the
query, where SQLite fails with an OverflowError; ``int()`` also read negative
numbers, "-0" and non-ASCII digits as ids. A NUL in the search failed on PostgreSQL.
"""

from __future__ import annotations

import pytest
from django.test import Client

from crm.chat.services import chat_service
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import INDEX, listed, new_chat

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
NOT_IDS = [
    "99999999999999999999999",
    str(2**63),  # one past the largest 64-bit id
    "-1",
    "-0",
    "0",
    " 1",
    "1_0",
    "1e3",
    "١٢٣",
    "x" * 5000,
    "\x00",
]


@pytest.fixture
def chats(world: ChatWorld) -> list[str]:
    """Two chats on different widgets, one assigned: any real filter drops one."""
    first = new_chat(world.widget, says="a")
    second = new_chat(world.other_widget, says="b")
    chat_service.assign_conversation(conversation=first, agent=world.employee, by=world.owner)
    return sorted([first.chat_id, second.chat_id])


class FilterValueTests:
    @pytest.mark.parametrize("name", ["assigned", "widget"])
    @pytest.mark.parametrize("value", NOT_IDS)
    def test_a_value_that_is_no_id_means_no_filter(
        self, owner: Client, chats: list[str], name: str, value: str
    ) -> None:
        response = owner.get(INDEX, {name: value})
        assert response.status_code == 200
        assert sorted(listed(response)) == chats

    def test_non_ascii_digits_of_a_real_id_are_not_that_id(
        self, world: ChatWorld, owner: Client, chats: list[str]
    ) -> None:
        for name, pk in [("assigned", world.employee.pk), ("widget", world.widget.pk)]:
            real = owner.get(INDEX, {name: str(pk)})
            assert len(listed(real)) == 1, name  # the filter itself works
            lookalike = owner.get(INDEX, {name: str(pk).translate(ARABIC_INDIC)})
            assert sorted(listed(lookalike)) == chats, name

    def test_the_largest_64_bit_id_is_a_filter_that_matches_nothing(
        self, owner: Client, chats: list[str]
    ) -> None:
        for name in ("assigned", "widget"):
            response = owner.get(INDEX, {name: str(2**63 - 1)})
            assert response.status_code == 200
            assert listed(response) == []

    @pytest.mark.parametrize("query", ["\x00", "a\x00", "\x00" * 300])
    def test_a_nul_in_the_search_is_dropped(self, owner: Client, chats: list[str], query: str):
        response = owner.get(INDEX, {"q": query})
        assert response.status_code == 200

    @pytest.mark.parametrize("page", ["99999999999999999999999", "-1", "-0", "\u0661", "\x00"])
    def test_a_page_number_that_is_no_page_is_harmless(self, owner: Client, page: str) -> None:
        assert owner.get(INDEX, {"page": page}).status_code == 200
