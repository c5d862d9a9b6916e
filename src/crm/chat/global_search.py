"""The chat's section of the CRM-wide search (``crm.core.search``).

The same query, scoping and snippets as the inbox search across every status tab:
a hit is a chat the agent could open from the inbox, with the message that matched.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.urls import reverse

from crm.chat import inbox_list, selectors
from crm.chat.search import Search
from crm.conf import module_enabled
from crm.core.search import HITS_PER_SECTION, Hit, Section, more_url


def chat_section(user: User, text: str) -> Section | None:
    if not module_enabled("chat") or not user.has_perm("crm_chat.view_chat"):
        return None
    search = Search.parse(text)
    conversations = selectors.conversation_list(agent=user, status=None, search=text)
    page = inbox_list.inbox_page(conversations, number=1, per_page=HITS_PER_SECTION, search=search)
    hits = [
        Hit(
            title=f"{row.chat_id} · {row.visitor_name}",
            url=reverse("crm-chat-show", args=[row.external_id])
            + (f"#m{row.match_seq}" if row.match_seq else ""),
            detail=" · ".join(x for x in (row.status.capitalize(), row.visitor_email) if x),
            snippet=row.match,
        )
        for row in page.rows
    ]
    return Section("Chats", hits, more_url("crm-chat-index", text, status="all"), page.has_next)
