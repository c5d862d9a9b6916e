"""Organisation pages: list, detail, create, edit and delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from crm.core import selectors, services
from crm.core.forms import NoteForm, OrganisationForm, SearchForm
from crm.core.models import Organisation
from crm.core.views.common import delete_context, notes_context, paginate
from crm.typing import AuthedHttpRequest


def get_organisation_or_404(external_id: UUID) -> Organisation:
    organisation = selectors.organisation_get(external_id=external_id)
    if organisation is None:
        raise Http404("No such organisation.")
    return organisation


def render_organisation(
    request: AuthedHttpRequest, organisation: Organisation, *, note_form: NoteForm | None = None
) -> HttpResponse:
    """The detail page; the note views show it again with their bound form on errors."""
    user = request.user
    context = {
        "organisation": organisation,
        "people": (
            list(selectors.organisation_people(organisation=organisation))
            if user.has_perm("crm_core.view_person")
            else None
        ),
        "leads": (
            list(selectors.organisation_leads(organisation=organisation))
            if user.has_perm("crm_core.view_lead")
            else None
        ),
        **notes_context(request, organisation, kind="organisation", note_form=note_form),
    }
    return render(request, "core/organisation_show.html", context)


@login_required
@permission_required("crm_core.view_organisation", raise_exception=True)
@require_safe
def organisation_index(request: AuthedHttpRequest) -> HttpResponse:
    """Organisations matching the search box, a page at a time."""
    form = SearchForm(request.GET)
    search = form.search()
    page = paginate(request, selectors.organisation_list(search=search))
    return render(
        request, "core/organisation_index.html", {"form": form, "search": search, "page_obj": page}
    )


@login_required
@permission_required("crm_core.view_organisation", raise_exception=True)
@require_safe
def organisation_show(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """One organisation: its details, people, leads and notes."""
    return render_organisation(request, get_organisation_or_404(external_id))


@login_required
@permission_required("crm_core.add_organisation", raise_exception=True)
@require_http_methods(["GET", "POST"])
def organisation_create(request: AuthedHttpRequest) -> HttpResponse:
    """A new organisation, owned by whoever creates it."""
    return _organisation_form(request, Organisation(owner=request.user))


@login_required
@permission_required("crm_core.change_organisation", raise_exception=True)
@require_http_methods(["GET", "POST"])
def organisation_edit(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Change an organisation's name, website or description."""
    return _organisation_form(request, get_organisation_or_404(external_id))


@login_required
@permission_required("crm_core.delete_organisation", raise_exception=True)
@require_http_methods(["GET", "POST"])
def organisation_delete(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, delete on POST."""
    organisation = get_organisation_or_404(external_id)
    if request.method == "POST":
        services.delete_organisation(organisation=organisation)
        messages.success(request, f"Deleted {organisation.name}.")
        return redirect("crm-organisation-index")
    context = delete_context(
        organisation,
        kind="organisation",
        consequences="Its notes are deleted too. Its people and leads are kept, "
        "without an organisation.",
    )
    return render(request, "core/confirm_delete.html", context)


def _organisation_form(request: AuthedHttpRequest, organisation: Organisation) -> HttpResponse:
    creating = organisation.pk is None
    # Taken before binding: an invalid form still writes its values onto the instance.
    heading = "New organisation" if creating else f"Edit {organisation.name}"
    data = request.POST if request.method == "POST" else None
    form = OrganisationForm(data, instance=organisation)
    if data is not None and form.is_valid():
        if creating:
            organisation = services.create_organisation(**form.cleaned_data, owner=request.user)
        else:
            services.update_organisation(organisation=organisation, data=form.cleaned_data)
        messages.success(request, f"{'Created' if creating else 'Saved'} {organisation.name}.")
        return redirect(organisation)
    context = {
        "form": form,
        "heading": heading,
        "cancel_url": (
            reverse("crm-organisation-index") if creating else organisation.get_absolute_url()
        ),
    }
    return render(request, "core/organisation_form.html", context)
