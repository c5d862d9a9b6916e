"""Lead pages: list, detail, create, edit and delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from crm.core import selectors, services
from crm.core.forms import LeadFilterForm, LeadForm, NoteForm
from crm.core.models import Lead
from crm.core.views.common import delete_context, notes_context, paginate
from crm.typing import AuthedHttpRequest


def get_lead_or_404(external_id: UUID) -> Lead:
    lead = selectors.lead_get(external_id=external_id)
    if lead is None:
        raise Http404("No such lead.")
    return lead


def render_lead(
    request: AuthedHttpRequest, lead: Lead, *, note_form: NoteForm | None = None
) -> HttpResponse:
    """The detail page; the note views show it again with their bound form on errors."""
    context = {"lead": lead, **notes_context(request, lead, kind="lead", note_form=note_form)}
    return render(request, "core/lead_show.html", context)


@login_required
@permission_required("crm_core.view_lead", raise_exception=True)
@require_safe
def lead_index(request: AuthedHttpRequest) -> HttpResponse:
    """Leads matching the search box and status filter, a page at a time."""
    form = LeadFilterForm(request.GET)
    search, status = form.search(), form.status_filter()
    page = paginate(request, selectors.lead_list(search=search, status=status))
    context = {
        "form": form,
        "search": search,
        "status": status,
        "status_label": dict(Lead.STATUSES).get(status, ""),
        "page_obj": page,
    }
    return render(request, "core/lead_index.html", context)


@login_required
@permission_required("crm_core.view_lead", raise_exception=True)
@require_safe
def lead_show(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """One lead: status, source, who it is about, who owns it, and notes."""
    return render_lead(request, get_lead_or_404(external_id))


@login_required
@permission_required("crm_core.add_lead", raise_exception=True)
@require_http_methods(["GET", "POST"])
def lead_create(request: AuthedHttpRequest) -> HttpResponse:
    """A new lead; its owner defaults to whoever creates it."""
    return _lead_form(request, Lead(owner=request.user))


@login_required
@permission_required("crm_core.change_lead", raise_exception=True)
@require_http_methods(["GET", "POST"])
def lead_edit(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Change a lead, e.g. move it to another status or owner."""
    return _lead_form(request, get_lead_or_404(external_id))


@login_required
@permission_required("crm_core.delete_lead", raise_exception=True)
@require_http_methods(["GET", "POST"])
def lead_delete(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, delete on POST."""
    lead = get_lead_or_404(external_id)
    if request.method == "POST":
        services.delete_lead(lead=lead)
        messages.success(request, f"Deleted {lead.title}.")
        return redirect("crm-lead-index")
    context = delete_context(lead, kind="lead", consequences="Its notes are deleted too.")
    return render(request, "core/confirm_delete.html", context)


def _lead_form(request: AuthedHttpRequest, lead: Lead) -> HttpResponse:
    creating = lead.pk is None
    # Taken before binding: an invalid form still writes its values onto the instance.
    heading = "New lead" if creating else f"Edit {lead.title}"
    data = request.POST if request.method == "POST" else None
    form = LeadForm(data, instance=lead)
    if data is not None and form.is_valid():
        if creating:
            # Product decision: a new lead always has someone responsible for it;
            # clearing the owner is possible later, when editing.
            owner = form.cleaned_data["owner"] or request.user
            lead = services.create_lead(**{**form.cleaned_data, "owner": owner})
        else:
            services.update_lead(lead=lead, data=form.cleaned_data)
        messages.success(request, f"{'Created' if creating else 'Saved'} {lead.title}.")
        return redirect(lead)
    context = {
        "form": form,
        "heading": heading,
        "cancel_url": reverse("crm-lead-index") if creating else lead.get_absolute_url(),
    }
    return render(request, "core/lead_form.html", context)
