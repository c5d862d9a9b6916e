from __future__ import annotations

from django.contrib import admin

from crm.core.models import Email, Lead, Note, Organisation, Person, Phone, Team


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
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    filter_horizontal = ("members",)


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "website", "owner", "team", "created_at")
    search_fields = ("name", "website")
    list_filter = ("team",)
    inlines = [NoteInline]


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ("name", "organisation", "owner", "created_at")
    search_fields = ("first_name", "last_name", "emails__address")
    list_select_related = ("organisation", "owner")
    inlines = [EmailInline, PhoneInline, NoteInline]


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ("title", "person", "organisation", "status", "source", "owner", "created_at")
    list_filter = ("status", "source", "team")
    search_fields = ("title", "description")
    list_select_related = ("person", "organisation", "owner")
    inlines = [NoteInline]


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "person", "organisation", "lead", "author", "created_at")
    search_fields = ("content",)


@admin.register(Email)
class EmailAdmin(admin.ModelAdmin):
    list_display = ("address", "person", "type", "primary")
    search_fields = ("address",)


@admin.register(Phone)
class PhoneAdmin(admin.ModelAdmin):
    list_display = ("number", "person", "type", "primary")
    search_fields = ("number",)
