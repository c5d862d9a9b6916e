from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import ValidationError
from django.db.models import ManyToManyField
from django.http import HttpRequest

from crm.core.models import Email, Lead, Note, Organisation, Person, Phone, Team

STORABLE_INTEGERS = range(-(2**63), 2**63)


def _unstorable(value: object) -> bool:
    """True for a filter value no row can hold: with a NUL, or a number beyond 64 bits.

    ``__in`` filters take a comma-separated list, so each item is looked at.
    """
    text = str(value)
    if "\x00" in text:
        return True
    for item in text.split(","):
        try:
            number = int(item)
        except ValueError:  # not a number (or one of more than 4300 digits)
            continue
        if number not in STORABLE_INTEGERS:
            return True
    return False


class BoundedMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Choices by id where an id no row can have is an invalid choice, not a 500.

    Django checks the submitted ids with ``pk__in=[…]``, a lookup it doesn't
    range-check: SQLite fails the query for a number beyond 64 bits.
    """

    def _check_values(self, value: Any) -> Any:
        for item in value or ():
            if _unstorable(item):
                raise ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": item},
                )
        # A private Django method that django-stubs leaves out.
        return super()._check_values(value)  # type: ignore[misc]


class SafeLookupsAdmin(admin.ModelAdmin):
    """Filters and choices the database can't take are refused, not 500s.

    A changelist filters by any field its query string names (``?widget=7``). A NUL
    in the value fails the query on PostgreSQL; a number beyond 64 bits fails it on
    SQLite when the field is a relation (Django range-checks only an integer field's
    own lookups). Neither can match a row, so the admin answers them as it answers
    any invalid filter: a redirect to ``?e=1``. Many-to-many choices in the forms
    (a team's members, a group's permissions) get the same check as a form error.
    """

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest) -> bool:
        if _unstorable(value):
            raise IncorrectLookupParameters(f"No row can hold this {lookup} value.")
        return super().lookup_allowed(lookup, value, request)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField | None:
        kwargs.setdefault("form_class", BoundedMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class EmailInline(admin.TabularInline):
    model = Email
    extra = 0


class PhoneInline(admin.TabularInline):
    model = Phone
    extra = 0


class NoteInline(admin.StackedInline):
    model = Note
    extra = 0
    fields = ("content", "author", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Team)
class TeamAdmin(SafeLookupsAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    filter_horizontal = ("members",)


@admin.register(Organisation)
class OrganisationAdmin(SafeLookupsAdmin):
    list_display = ("name", "website", "owner", "team", "created_at")
    search_fields = ("name", "website")
    list_filter = ("team",)
    inlines = [NoteInline]


@admin.register(Person)
class PersonAdmin(SafeLookupsAdmin):
    list_display = ("name", "organisation", "owner", "created_at")
    search_fields = ("first_name", "last_name", "emails__address")
    list_select_related = ("organisation", "owner")
    inlines = [EmailInline, PhoneInline, NoteInline]


@admin.register(Lead)
class LeadAdmin(SafeLookupsAdmin):
    list_display = ("title", "person", "organisation", "status", "source", "owner", "created_at")
    list_filter = ("status", "source", "team")
    search_fields = ("title", "description")
    list_select_related = ("person", "organisation", "owner")
    inlines = [NoteInline]


@admin.register(Note)
class NoteAdmin(SafeLookupsAdmin):
    list_display = ("__str__", "person", "organisation", "lead", "author", "created_at")
    search_fields = ("content",)


@admin.register(Email)
class EmailAdmin(SafeLookupsAdmin):
    list_display = ("address", "person", "type", "primary")
    search_fields = ("address",)


@admin.register(Phone)
class PhoneAdmin(SafeLookupsAdmin):
    list_display = ("number", "person", "type", "primary")
    search_fields = ("number",)


def _guard_other_apps() -> None:
    """Give the admins of apps listed before this one (Django's auth, django-tasks)
    the same guard: their changelists take any field in the query string too.

    They are registered by now: the admin imports each app's admin module in
    ``INSTALLED_APPS`` order. The chat app's admins use ``SafeLookupsAdmin`` directly.
    """
    for model, model_admin in list(admin.site._registry.items()):
        if isinstance(model_admin, SafeLookupsAdmin):
            continue
        cls = type(model_admin)
        guarded = type(cls.__name__, (SafeLookupsAdmin, cls), {"__module__": cls.__module__})
        admin.site.unregister(model)
        admin.site.register(model, guarded)


_guard_other_apps()
