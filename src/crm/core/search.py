"""The CRM-wide search in the sidebar: one query, one page, every kind of record.

Each module contributes a *provider*: a function that takes the agent and the text
and returns a section of hits, or None when the agent may not see that kind of record
(or the module is off). The core registers people, organisations and leads; the chat
module registers its conversations from its ``AppConfig.ready``. Providers reuse the
list selectors of their module, so a hit here is always one the agent would find on
that module's own page, with the same permissions and scoping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from django.contrib.auth.models import User
from django.db.models import Model, QuerySet
from django.urls import reverse
from django.utils.safestring import SafeString

from crm.core import selectors

HITS_PER_SECTION = 5
M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class Hit:
    title: str
    url: str
    detail: str = ""
    # Already escaped by the provider, with <mark> around the matched words.
    snippet: SafeString | None = None


@dataclass(frozen=True, slots=True)
class Section:
    label: str
    hits: list[Hit]
    # The module's own list with the same query, for everything beyond the first hits.
    more_url: str
    more: bool = False


Provider = Callable[[User, str], Section | None]
_providers: list[tuple[int, Provider]] = []


def register(provider: Provider, *, order: int) -> None:
    """Add a provider (once); sections are shown by ascending ``order``."""
    if all(p is not provider for _, p in _providers):
        _providers.append((order, provider))
        _providers.sort(key=lambda item: item[0])


def search_everything(*, user: User, text: str) -> list[Section]:
    """Every section with at least one hit for ``text``, in provider order."""
    text = " ".join(text.replace("\x00", "").split())[:200]
    if not text:
        return []
    sections = []
    for _, provider in _providers:
        section = provider(user, text)
        if section is not None and section.hits:
            sections.append(section)
    return sections


def first_hits(rows: QuerySet[M], size: int = HITS_PER_SECTION) -> tuple[list[M], bool]:
    """The first ``size`` rows (fetched with one more) and whether more exist."""
    items = list(rows[: size + 1])
    return items[:size], len(items) > size


def more_url(name: str, text: str, **params: str) -> str:
    return f"{reverse(name)}?{urlencode({'q': text, **params})}"


def _people(user: User, text: str) -> Section | None:
    if not user.has_perm("crm_core.view_person"):
        return None
    people, more = first_hits(selectors.person_list(search=text))
    hits = [
        Hit(
            title=p.name,
            url=p.get_absolute_url(),
            detail=p.organisation.name if p.organisation else "",
        )
        for p in people
    ]
    return Section("People", hits, more_url("crm-person-index", text), more)


def _organisations(user: User, text: str) -> Section | None:
    if not user.has_perm("crm_core.view_organisation"):
        return None
    organisations, more = first_hits(selectors.organisation_list(search=text))
    hits = [Hit(title=o.name, url=o.get_absolute_url(), detail=o.website) for o in organisations]
    return Section("Organisations", hits, more_url("crm-organisation-index", text), more)


def _leads(user: User, text: str) -> Section | None:
    if not user.has_perm("crm_core.view_lead"):
        return None
    leads, more = first_hits(selectors.lead_list(search=text))
    hits = [
        Hit(
            title=lead.title,
            url=lead.get_absolute_url(),
            detail=" · ".join(
                x for x in (lead.get_status_display(), lead.person.name if lead.person else "") if x
            ),
        )
        for lead in leads
    ]
    return Section("Leads", hits, more_url("crm-lead-index", text), more)


register(_people, order=20)
register(_organisations, order=30)
register(_leads, order=40)
