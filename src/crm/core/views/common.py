"""Helpers shared by the people, organisation and lead pages."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse

from crm.core import selectors
from crm.core.forms import NoteForm
from crm.core.models import Lead, Organisation, Person

PER_PAGE = 25


def paginate(request: HttpRequest, queryset: QuerySet[Any]) -> Page:
    """The page named by ``?page=``; a missing or bad number gives the first or last page."""
    return Paginator(queryset, PER_PAGE).get_page(request.GET.get("page"))


def notes_context(
    request: HttpRequest,
    parent: Person | Organisation | Lead,
    *,
    kind: str,
    note_form: NoteForm | None = None,
) -> dict[str, Any]:
    """What ``core/notes.html`` needs; ``notes`` is ``None`` when the user may not read them."""
    can_view = request.user.has_perm("crm_core.view_note")
    return {
        "notes": list(selectors.note_list(parent=parent)) if can_view else None,
        "note_form": note_form or NoteForm(),
        "note_create_url": reverse(f"crm-{kind}-note-create", args=[parent.external_id]),
        "note_delete_url_name": f"crm-{kind}-note-delete",
        "note_parent": parent,
    }


def delete_context(
    obj: Person | Organisation | Lead, *, kind: str, consequences: str
) -> dict[str, Any]:
    """What ``core/confirm_delete.html`` needs to ask before deleting ``obj``."""
    return {
        "object": obj,
        "kind": kind,
        "consequences": consequences,
        "cancel_url": obj.get_absolute_url(),
    }
