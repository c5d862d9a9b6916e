"""Read queries of the CRM core.

Every list selector takes the raw search text; splitting and matching live here
so that a view never builds a ``Q`` itself. Lookups return ``None`` rather than
raising, so the view decides between 404 and anything else.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet

from crm.core.models import Email, Lead, Note, Organisation, Person, Phone, phone_digits

# Terms beyond this are ignored: each one adds OR-ed LIKE clauses to the query.
MAX_SEARCH_TERMS = 5
# A search of at least this many digits and phone punctuation only is a phone number.
PHONE_MIN_DIGITS = 5
PHONE_PUNCTUATION = frozenset(" +-().")


def _terms(search: str) -> list[str]:
    return search.split()[:MAX_SEARCH_TERMS]


def dashboard_summary(*, user: User | AnonymousUser) -> dict[str, Any]:
    return {
        "people_count": Person.objects.count() if user.has_perm("crm_core.view_person") else None,
        "organisation_count": (
            Organisation.objects.count() if user.has_perm("crm_core.view_organisation") else None
        ),
        "lead_count": Lead.objects.count() if user.has_perm("crm_core.view_lead") else None,
        "recent_leads": (
            list(Lead.objects.select_related("person", "owner")[:5])
            if user.has_perm("crm_core.view_lead")
            else []
        ),
    }


def person_list(*, search: str = "") -> QuerySet[Person]:
    """People whose name, email address or organisation name matches every term, or
    who have the phone number searched for."""
    # pk breaks ties so that a page boundary never repeats or skips a namesake.
    people = (
        Person.objects.select_related("organisation")
        .prefetch_related("emails")
        .order_by("first_name", "last_name", "pk")
    )
    if len(digits := phone_digits(search)) >= PHONE_MIN_DIGITS and _looks_like_phone(search):
        # A phone number, however it is typed: its digits, through their index first
        # (the whole number), then as the end of a stored one (typed without the
        # country or area code).
        by_phone = Phone.objects.filter(Q(digits=digits) | Q(digits__endswith=digits))
        return people.filter(pk__in=by_phone.values("person_id"))
    for term in _terms(search):
        # A subquery, not a join on emails: a join would repeat a person once per
        # matching address and need DISTINCT, which breaks the pagination count.
        by_email = Email.objects.filter(address__icontains=term).values("person_id")
        people = people.filter(
            Q(first_name__icontains=term)
            | Q(last_name__icontains=term)
            | Q(organisation__name__icontains=term)
            | Q(pk__in=by_email)
        )
    return people


def _looks_like_phone(text: str) -> bool:
    """Digits with the usual phone punctuation only ("+44 (0)20 7946-0001")."""
    return all(c.isascii() and (c.isdigit() or c in PHONE_PUNCTUATION) for c in text.strip())


def person_get(*, external_id: UUID) -> Person | None:
    return (
        Person.objects.select_related("organisation", "owner")
        .prefetch_related("emails", "phones")
        .filter(external_id=external_id)
        .first()
    )


def person_leads(*, person: Person) -> QuerySet[Lead]:
    return Lead.objects.filter(person=person).select_related("organisation", "owner")


def person_with_email(*, address: str) -> Person | None:
    """The person who has ``address`` (any case), preferring one where it is primary."""
    email = (
        Email.objects.select_related("person")
        .filter(address__iexact=address)
        .order_by("-primary", "id")
        .first()
    )
    return email.person if email else None


def organisation_list(*, search: str = "") -> QuerySet[Organisation]:
    """Organisations whose name or website matches every term, with record counts."""
    organisations = Organisation.objects.annotate(
        people_count=Count("people", distinct=True), lead_count=Count("leads", distinct=True)
    ).order_by("name", "pk")  # Meta.ordering does not apply to aggregate queries.
    for term in _terms(search):
        organisations = organisations.filter(Q(name__icontains=term) | Q(website__icontains=term))
    return organisations


def organisation_get(*, external_id: UUID) -> Organisation | None:
    return Organisation.objects.select_related("owner").filter(external_id=external_id).first()


def organisation_people(*, organisation: Organisation) -> QuerySet[Person]:
    return Person.objects.filter(organisation=organisation).prefetch_related("emails")


def organisation_leads(*, organisation: Organisation) -> QuerySet[Lead]:
    return Lead.objects.filter(organisation=organisation).select_related("person", "owner")


def lead_list(*, search: str = "", status: str = "") -> QuerySet[Lead]:
    """Leads whose title or person's name matches every term, optionally of one status."""
    leads = Lead.objects.select_related("person", "organisation", "owner").order_by(
        "-created_at", "-pk"
    )
    if status:
        leads = leads.filter(status=status)
    for term in _terms(search):
        leads = leads.filter(
            Q(title__icontains=term)
            | Q(person__first_name__icontains=term)
            | Q(person__last_name__icontains=term)
        )
    return leads


def lead_get(*, external_id: UUID) -> Lead | None:
    return (
        Lead.objects.select_related("person", "organisation", "owner")
        .filter(external_id=external_id)
        .first()
    )


def note_list(*, parent: Person | Organisation | Lead) -> QuerySet[Note]:
    """Notes of one record, newest first (the model's default ordering)."""
    return Note.objects.filter(**{note_parent_field(parent): parent}).select_related("author")


def note_get(*, parent: Person | Organisation | Lead, note_id: int) -> Note | None:
    """One note, only if it belongs to ``parent``: a URL cannot pair a note with a stranger."""
    return Note.objects.filter(**{note_parent_field(parent): parent}, pk=note_id).first()


def note_parent_field(parent: Person | Organisation | Lead) -> str:
    """The ``Note`` foreign key that points at ``parent``'s kind."""
    if isinstance(parent, Person):
        return "person"
    if isinstance(parent, Organisation):
        return "organisation"
    if isinstance(parent, Lead):
        return "lead"
    raise TypeError(f"Notes cannot belong to a {type(parent).__name__}.")
