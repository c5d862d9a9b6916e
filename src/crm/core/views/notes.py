"""Notes on people, organisations and leads: add and delete, both by POST only.

Each parent kind gets its own pair of views so that the decorator names the
exact permissions checked: the note permission plus reading the parent.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from crm.core import selectors, services
from crm.core.forms import NoteForm
from crm.core.models import Lead, Organisation, Person
from crm.core.views.leads import get_lead_or_404, render_lead
from crm.core.views.organisations import get_organisation_or_404, render_organisation
from crm.core.views.people import get_person_or_404, render_person
from crm.typing import AuthedHttpRequest

Parent = Person | Organisation | Lead
RenderParent = Callable[..., HttpResponse]


@login_required
@permission_required(["crm_core.add_note", "crm_core.view_person"], raise_exception=True)
@require_POST
def person_note_create(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Add a note to a person."""
    person = get_person_or_404(external_id)
    return _create(request, person, render_person)


@login_required
@permission_required(["crm_core.delete_note", "crm_core.view_person"], raise_exception=True)
@require_POST
def person_note_delete(request: AuthedHttpRequest, external_id: UUID, note_id: int) -> HttpResponse:
    """Delete one of a person's notes."""
    return _delete(request, get_person_or_404(external_id), note_id)


@login_required
@permission_required(["crm_core.add_note", "crm_core.view_organisation"], raise_exception=True)
@require_POST
def organisation_note_create(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Add a note to an organisation."""
    organisation = get_organisation_or_404(external_id)
    return _create(request, organisation, render_organisation)


@login_required
@permission_required(["crm_core.delete_note", "crm_core.view_organisation"], raise_exception=True)
@require_POST
def organisation_note_delete(
    request: AuthedHttpRequest, external_id: UUID, note_id: int
) -> HttpResponse:
    """Delete one of an organisation's notes."""
    return _delete(request, get_organisation_or_404(external_id), note_id)


@login_required
@permission_required(["crm_core.add_note", "crm_core.view_lead"], raise_exception=True)
@require_POST
def lead_note_create(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Add a note to a lead."""
    lead = get_lead_or_404(external_id)
    return _create(request, lead, render_lead)


@login_required
@permission_required(["crm_core.delete_note", "crm_core.view_lead"], raise_exception=True)
@require_POST
def lead_note_delete(request: AuthedHttpRequest, external_id: UUID, note_id: int) -> HttpResponse:
    """Delete one of a lead's notes."""
    return _delete(request, get_lead_or_404(external_id), note_id)


def _create(request: AuthedHttpRequest, parent: Parent, render: RenderParent) -> HttpResponse:
    form = NoteForm(request.POST)
    if not form.is_valid():
        # The parent's page again, with the typed text and its error kept.
        return render(request, parent, note_form=form)
    services.create_note(parent=parent, content=form.cleaned_data["content"], author=request.user)
    messages.success(request, "Note added.")
    return redirect(f"{parent.get_absolute_url()}#notes")


def _delete(request: AuthedHttpRequest, parent: Parent, note_id: int) -> HttpResponse:
    note = selectors.note_get(parent=parent, note_id=note_id)
    if note is None:
        raise Http404("No such note.")
    services.delete_note(note=note)
    messages.success(request, "Note deleted.")
    return redirect(f"{parent.get_absolute_url()}#notes")
