"""People pages: list, detail, create, edit and delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from crm.core import selectors, services
from crm.core.forms import EmailFormSet, NoteForm, PersonForm, PhoneFormSet, SearchForm
from crm.core.models import Email, Person, Phone
from crm.core.views.common import delete_context, notes_context, paginate
from crm.typing import AuthedHttpRequest


def get_person_or_404(external_id: UUID) -> Person:
    person = selectors.person_get(external_id=external_id)
    if person is None:
        raise Http404("No such person.")
    return person


def render_person(
    request: AuthedHttpRequest, person: Person, *, note_form: NoteForm | None = None
) -> HttpResponse:
    """The detail page; the note views show it again with their bound form on errors."""
    can_view_leads = request.user.has_perm("crm_core.view_lead")
    context = {
        "person": person,
        "leads": list(selectors.person_leads(person=person)) if can_view_leads else None,
        **notes_context(request, person, kind="person", note_form=note_form),
    }
    return render(request, "core/person_show.html", context)


@login_required
@permission_required("crm_core.view_person", raise_exception=True)
@require_safe
def person_index(request: AuthedHttpRequest) -> HttpResponse:
    """People matching the search box, a page at a time."""
    form = SearchForm(request.GET)
    search = form.search()
    page = paginate(request, selectors.person_list(search=search))
    return render(
        request, "core/person_index.html", {"form": form, "search": search, "page_obj": page}
    )


@login_required
@permission_required("crm_core.view_person", raise_exception=True)
@require_safe
def person_show(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """One person: contact details, organisation, leads and notes."""
    return render_person(request, get_person_or_404(external_id))


@login_required
@permission_required("crm_core.add_person", raise_exception=True)
@require_http_methods(["GET", "POST"])
def person_create(request: AuthedHttpRequest) -> HttpResponse:
    """A new person, owned by whoever creates them, with emails and phone numbers."""
    return _person_form(request, Person(owner=request.user))


@login_required
@permission_required("crm_core.change_person", raise_exception=True)
@require_http_methods(["GET", "POST"])
def person_edit(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Change a person's details, emails and phone numbers together."""
    return _person_form(request, get_person_or_404(external_id))


@login_required
@permission_required("crm_core.delete_person", raise_exception=True)
@require_http_methods(["GET", "POST"])
def person_delete(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, delete on POST."""
    person = get_person_or_404(external_id)
    if request.method == "POST":
        services.delete_person(person=person)
        messages.success(request, f"Deleted {person.name}.")
        return redirect("crm-person-index")
    context = delete_context(
        person,
        kind="person",
        consequences="Their email addresses, phone numbers and notes are deleted too. "
        "Their leads are kept, without a person.",
    )
    return render(request, "core/confirm_delete.html", context)


def _person_form(request: AuthedHttpRequest, person: Person) -> HttpResponse:
    creating = person.pk is None
    # Taken before binding: an invalid form still writes its values onto the instance.
    heading = "New person" if creating else f"Edit {person.name}"
    data = request.POST if request.method == "POST" else None
    form = PersonForm(data, instance=person)
    emails = EmailFormSet(data, instance=person, prefix="emails")
    phones = PhoneFormSet(data, instance=person, prefix="phones")
    # Every form is validated (a list, not a short-circuit), so one bad row doesn't hide
    # the others' errors.
    if data is not None and all([form.is_valid(), emails.is_valid(), phones.is_valid()]):
        # commit=False only collects the rows: the service saves the person and every
        # address and number together, or nothing.
        new_emails, new_phones = emails.save(commit=False), phones.save(commit=False)
        if creating:
            person = services.create_person(
                **form.cleaned_data, owner=request.user, emails=new_emails, phones=new_phones
            )
        else:
            removed: list[Email | Phone] = [*emails.deleted_objects, *phones.deleted_objects]
            services.update_person(
                person=person,
                data=form.cleaned_data,
                removed=removed,
                emails=new_emails,
                phones=new_phones,
            )
        messages.success(request, f"{'Created' if creating else 'Saved'} {person.name}.")
        return redirect(person)
    context = {
        "form": form,
        "emails": emails,
        "phones": phones,
        "heading": heading,
        "cancel_url": reverse("crm-person-index") if creating else person.get_absolute_url(),
    }
    return render(request, "core/person_form.html", context)
