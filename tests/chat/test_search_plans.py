"""PostgreSQL's search plans: the GIN index is used, and the planner's estimate tells
common words (walk the inbox) from rare ones (list the index's matches)."""

from __future__ import annotations

import pytest
from django.db import connection

from crm.chat import search as search_module
from crm.chat.models import ChatMessage
from crm.chat.search import Search
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import new_chat, visitor_says


@pytest.mark.postgres
class PostgresIndexTests:
    def test_the_body_search_uses_the_gin_index(self, world: ChatWorld) -> None:
        from crm.chat.search import messages_matching

        sql, params = messages_matching(Search.parse("parcel")).query.sql_with_params()  # type: ignore[arg-type]
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert f"{ChatMessage._meta.db_table}_body_fts" in plan, plan

    def test_the_planner_estimate_tells_common_words_from_rare_ones(
        self, world: ChatWorld, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(search_module, "COMMON_MIN_MESSAGES", 0)
        conv = new_chat(world.widget, says="kangaroo")
        for i in range(300):
            visitor_says(conv, f"hello again {i}")
        with connection.cursor() as cursor:
            cursor.execute(f'ANALYZE "{ChatMessage._meta.db_table}"')
        assert search_module.is_common(Search.parse("hello"))  # type: ignore[arg-type]
        assert not search_module.is_common(Search.parse("kangaroo"))  # type: ignore[arg-type]
        assert not search_module.is_common(Search.parse("wombat"))  # type: ignore[arg-type]
