"""Forms of the CRM core pages: validation only; the views save through ``crm.core.services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.forms.formsets import DELETION_FIELD_NAME
from django.utils.translation import gettext_lazy as _

from crm.core import services
from crm.core.models import Email, Lead, Note, Organisation, Person, Phone

SEARCH_MAX_LENGTH = 200


class SearchForm(forms.Form):
    """The ``q`` box on every list page; an invalid value simply means no search."""

    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=SEARCH_MAX_LENGTH,
        widget=forms.TextInput(attrs={"type": "search"}),
    )

    def search(self) -> str:
        return self.cleaned_data.get("q", "") if self.is_valid() else ""


class LeadFilterForm(SearchForm):
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("All statuses")), *Lead.STATUSES],
    )

    def status_filter(self) -> str:
        return self.cleaned_data.get("status", "") if self.is_valid() else ""


class OrganisationForm(forms.ModelForm):
    # Declared to pick https for a typed "example.com", as Django 6 will by default.
    website = forms.URLField(
        label=_("Website"), max_length=500, required=False, assume_scheme="https"
    )

    class Meta:
        model = Organisation
        fields = ["name", "website", "description"]


class PersonForm(forms.ModelForm):
    class Meta:
        model = Person
        fields = ["first_name", "last_name", "title", "organisation", "description"]


class _OnePrimaryFormSet(forms.BaseInlineFormSet):
    """Rejects more than one row ticked "primary": the list shows the first one only."""

    def clean(self) -> None:
        super().clean()
        # The rule itself lives in the service, which checks it again before writing.
        services.one_primary(
            bool(f.cleaned_data.get("primary"))
            for f in self.forms
            if not f.cleaned_data.get(DELETION_FIELD_NAME, False)
        )


EmailFormSet = forms.inlineformset_factory(
    Person,
    Email,
    formset=_OnePrimaryFormSet,
    fields=["address", "type", "primary"],
    extra=1,
    can_delete=True,
)
PhoneFormSet = forms.inlineformset_factory(
    Person,
    Phone,
    formset=_OnePrimaryFormSet,
    fields=["number", "type", "primary"],
    extra=1,
    can_delete=True,
)


class _OwnerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return obj.get_full_name() or obj.get_username()


class LeadForm(forms.ModelForm):
    owner = _OwnerChoiceField(
        label=_("Owner"),
        # Inactive agents stay listed: hiding them would silently unassign their leads
        # whenever someone edits one.
        queryset=get_user_model().objects.order_by("username"),
        required=False,
    )

    class Meta:
        model = Lead
        fields = ["title", "description", "person", "organisation", "status", "source", "owner"]


class NoteForm(forms.ModelForm):
    class Meta:
        model = Note
        fields = ["content"]
        widgets = {"content": forms.Textarea(attrs={"rows": 4})}
