"""Inbox search: which conversations a query finds, and the message that matched.

The search box takes what agents type elsewhere: words (stemmed: "refunds" finds
"refund"), "quoted phrases", ``-excluded`` words and ``or``, like PostgreSQL's
``websearch_to_tsquery``; SQLite's FTS5 gets the same query translated. Message
bodies (internal notes included: agents who see a conversation see its notes)
are matched through the full-text indexes of migration 0006; visitor names,
emails and subjects by substring (``pg_trgm`` indexes on PostgreSQL). A chat id
("C1042") is an exact index lookup of that chat alone; an exact email ranks its
visitor's chats first; otherwise the newest activity comes first, as in the inbox.

The snippet of the matched message is highlighted by the database between two
private-use characters, then escaped here before those become ``<mark>``: the
text anyone typed never reaches the page as HTML.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchVector
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Replace
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from crm.chat.search_index import SEARCH_CONFIG, body_tsvector, fts_table

START, STOP = "\ue000", "\ue001"
_MARKED = re.compile(f"{START}([^{START}{STOP}]*){STOP}")
_CHAT_ID = re.compile(r"#?[Cc]([0-9]{1,9})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# websearch syntax: "a phrase", -word, or, plain words.
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
SNIPPET_WORDS = 16
# From this estimated share of all messages on, a word is common (see
# ``is_common``); below this many messages the index plan always wins.
COMMON_SHARE = 0.02
COMMON_MIN_MESSAGES = 50_000


@dataclass(frozen=True, slots=True)
class Search:
    """A parsed search box: the raw text and the exact lookups it allows."""

    text: str
    chat_id: str | None
    email: str | None

    @classmethod
    def parse(cls, text: str) -> Search | None:
        text = " ".join(text.replace("\x00", "").split())[:200]
        if not text:
            return None
        chat_id = _CHAT_ID.fullmatch(text)
        return cls(
            text=text,
            chat_id=f"C{int(chat_id[1])}" if chat_id else None,
            email=text.lower() if _EMAIL.fullmatch(text) else None,
        )


def matching(
    conversations: QuerySet[ChatConversation], search: Search
) -> QuerySet[ChatConversation]:
    """``conversations`` narrowed to those ``search`` finds, best first.

    The branches are grouped, so the caller's status tab and filters still apply to
    every one. A chat id finds that conversation only. An exact email address ranks
    its visitor's chats first; otherwise hits come newest first: ranking every hit
    by relevance would sort all of them before the first page, while newest-first
    lets the database walk the inbox index and stop at a page.
    """
    if search.chat_id:
        # The one conversation of that id: an index lookup, whatever the data size.
        return conversations.filter(chat_id=search.chat_id)
    if is_common(search):
        # A common word: walk the tab newest first, testing each row on its own (its
        # visitor is joined anyway), and stop at a page (see ``is_common``).
        found = (
            Q(visitor__name__icontains=search.text)
            | Q(visitor__email__icontains=search.text)
            | Q(subject__icontains=search.text)
            | Q(HasMatchingMessage(search.text))
        )
    else:
        # Few matches: one list of them, each branch from its own index (trigram or
        # full-text), which the database joins to the tab and sorts; with an OR of the
        # branches instead it would walk the whole tab to find none. No ORDER BY in a
        # branch: SQLite refuses one inside a UNION.
        visitors = ChatVisitor.objects.filter(
            Q(name__icontains=search.text) | Q(email__icontains=search.text)
        ).values("pk")
        by_visitor = ChatConversation.objects.filter(visitor__in=visitors).order_by().values("pk")
        by_subject = (
            ChatConversation.objects.filter(subject__icontains=search.text).order_by().values("pk")
        )
        by_text = messages_matching(search).order_by().values("conversation_id")
        found = Q(pk__in=by_visitor.union(by_subject, by_text, all=True))
    qs = conversations.filter(found)
    if search.email:
        exact = Case(
            When(visitor__email__iexact=search.email, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        qs = qs.annotate(search_tier=exact).order_by("search_tier", "-last_message_at", "-id")
    return qs


def is_common(search: Search) -> bool:
    """True when PostgreSQL estimates ``search`` matches ``COMMON_SHARE`` of messages.

    A rare word is best found from the GIN index: its few messages, listed once. A
    common word (in thousands of messages) makes that list long, ~100 ms at a
    million messages; walking the inbox newest first and testing each
    conversation's own messages stops after ~25 conversations instead. PostgreSQL's
    estimate comes from the statistics ANALYZE keeps on the index expression (most
    common lexemes); words outside them are estimated rare, the safe side: the index
    plan is never slow for a word that really is rare. (Several words are estimated
    as if independent, so words that come together, like "blue stock", can be taken
    for rare: still correct, only slower.)
    """
    if connection.vendor != "postgresql":
        return False  # SQLite: FTS5 lists matches fast at the sizes SQLite serves
    sql, params = messages_matching(search).values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
            [ChatMessage._meta.db_table],
        )
        row = cursor.fetchone()
        total = float(row[0]) if row else -1.0
        if total < COMMON_MIN_MESSAGES:  # never analysed (-1), or small: the index wins
            return False
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"]) >= COMMON_SHARE * total


class HasMatchingMessage(Func):
    """``EXISTS`` a message of the outer conversation matching the query (PostgreSQL),
    read through the conversation's index. ``OFFSET 0`` keeps the planner from
    turning it back into the hashed list of every match."""

    output_field = BooleanField()

    def __init__(self, query: str) -> None:
        super().__init__(F("pk"), Value(query))

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[override]
        outer, query = self.get_source_expressions()
        outer_sql, outer_params = compiler.compile(outer)
        query_sql, query_params = compiler.compile(query)
        q = connection.ops.quote_name
        table = q(ChatMessage._meta.db_table)
        sql = (
            f"EXISTS (SELECT 1 FROM {table} AS search_m "
            f"WHERE search_m.{q('conversation_id')} = {outer_sql} "
            f"AND {_body_matches('search_m.' + q('body'), query_sql)} OFFSET 0)"
        )
        return sql, (*outer_params, *query_params)


class BodyMatches(Func):
    """``body`` matches the websearch query (PostgreSQL): the very expression of the
    GIN index of migration 0006, with the column aliased as the query needs."""

    output_field = BooleanField()

    def __init__(self, query: str) -> None:
        super().__init__(F("body"), Value(query))

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[override]
        body, query = self.get_source_expressions()
        body_sql, body_params = compiler.compile(body)
        query_sql, query_params = compiler.compile(query)
        return _body_matches(body_sql, query_sql), (*body_params, *query_params)


def _body_matches(body_sql: str, query_sql: str) -> str:
    """The GIN index's expression over ``body_sql`` matching the websearch query."""
    return f"{body_tsvector(body_sql)} @@ websearch_to_tsquery('{SEARCH_CONFIG}'::regconfig, {query_sql})"


def messages_matching(search: Search) -> QuerySet[ChatMessage]:
    """Messages whose body matches the words of ``search`` (an index scan)."""
    if connection.vendor == "postgresql":
        return ChatMessage.objects.filter(BodyMatches(search.text))
    fts_query = fts5_query(search.text)
    if fts_query is None:
        return ChatMessage.objects.none()
    fts = fts_table(ChatMessage._meta.db_table)
    rowids = RawSQL(f'SELECT rowid FROM "{fts}" WHERE "{fts}" MATCH %s', [fts_query])
    return ChatMessage.objects.filter(pk__in=rowids)


def snippets(conversation_ids: list[int], search: Search) -> dict[int, tuple[int, SafeString]]:
    """For each conversation, its newest matching message: (seq, highlighted snippet).

    Runs for one page of results only.
    """
    if not conversation_ids:
        return {}
    if connection.vendor == "postgresql":
        # Django's SearchVector, not the GIN index's expression: for one page of
        # conversations, their own messages (conversation index) are far fewer than
        # a common word's matches in the index.
        query = SearchQuery(search.text, search_type="websearch", config=SEARCH_CONFIG)
        ids = ChatMessage.objects.annotate(
            document=SearchVector("body", config=SEARCH_CONFIG)
        ).filter(conversation_id__in=conversation_ids, document=query)
        # PostgreSQL's parser takes "<b>" in a message for markup and drops it from the
        # headline; entities it keeps. So the body goes in escaped and comes out
        # unescaped (``html.unescape``), before ``highlight`` escapes it for the page.
        escaped = Replace(
            Replace(Replace(F("body"), Value("&"), Value("&amp;")), Value("<"), Value("&lt;")),
            Value(">"),
            Value("&gt;"),
        )
        headline = SearchHeadline(
            escaped,
            query,
            config=SEARCH_CONFIG,
            start_sel=START,
            stop_sel=STOP,
            max_words=SNIPPET_WORDS,
            min_words=6,
        )
        rows = (
            ids.order_by("conversation_id", "-seq")
            .distinct("conversation_id")
            .annotate(snippet=headline)
            .values_list("conversation_id", "seq", "snippet")
        )
        return {conv: (seq, highlight(html.unescape(snippet))) for conv, seq, snippet in rows}
    table = ChatMessage._meta.db_table
    fts = fts_table(table)
    fts_query = fts5_query(search.text)
    newest: dict[int, tuple[int, str]] = {}
    if fts_query is None:
        return {}
    marks = ", ".join(["%s"] * len(conversation_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.conversation_id, m.seq, snippet(\"{fts}\", 0, %s, %s, '…', %s) "
            f'FROM "{fts}" JOIN "{table}" AS m ON m.id = "{fts}".rowid '
            f'WHERE "{fts}" MATCH %s AND m.conversation_id IN ({marks})',
            [START, STOP, SNIPPET_WORDS, fts_query, *conversation_ids],
        )
        for conv, seq, snippet in cursor.fetchall():
            if conv not in newest or seq > newest[conv][0]:
                newest[conv] = (seq, snippet)
    return {conv: (seq, highlight(snippet)) for conv, (seq, snippet) in newest.items()}


def highlight(snippet: str) -> SafeString:
    """The database's marked snippet as HTML: escaped text, ``<mark>`` for the matches.

    Stray marker characters (a message could contain them) are dropped, so no
    unbalanced tag can come out of what someone typed.
    """
    escaped = _MARKED.sub(r"<mark>\1</mark>", escape(snippet))
    return mark_safe(escaped.replace(START, "").replace(STOP, ""))


def fts5_query(text: str) -> str | None:
    """The websearch syntax as an FTS5 query; None when nothing positive is left.

    Every word and phrase is quoted (so ``AND``, ``NEAR``, ``*`` or a stray quote
    typed by an agent are words, never syntax); ``-word`` becomes ``NOT``, ``or``
    joins its neighbours.
    """
    positive: list[str] = []
    negative: list[str] = []
    pending_or = False
    for sign, phrase, word in _TOKEN.findall(text):
        if word and word.lower() == "or" and positive:
            pending_or = True
            continue
        if word.startswith("-") and len(word) > 1:
            sign, word = "-", word[1:]
        term = (phrase if phrase or not word else word).replace('"', '""').strip()
        if not term:
            continue
        quoted = f'"{term}"'
        if sign:
            negative.append(quoted)
        elif pending_or:
            positive[-1] = f"({positive[-1]} OR {quoted})"
        else:
            positive.append(quoted)
        pending_or = False
    if not positive:
        return None
    query = " AND ".join(positive)
    for term in negative:
        query = f"({query}) NOT {term}"
    return query
