from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from crm.core.views import assets, dashboard, leads, notes, organisations, people, search

urlpatterns = [
    path("favicon.ico", assets.favicon, name="favicon"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("crm/", dashboard.dashboard, name="crm-dashboard"),
    path("crm/settings/", dashboard.settings_index, name="crm-settings"),
    path("crm/search/", search.search, name="crm-search"),
    # People
    path("crm/people/", people.person_index, name="crm-person-index"),
    path("crm/people/new/", people.person_create, name="crm-person-create"),
    path("crm/people/<uuid:external_id>/", people.person_show, name="crm-person-show"),
    path("crm/people/<uuid:external_id>/edit/", people.person_edit, name="crm-person-edit"),
    path("crm/people/<uuid:external_id>/delete/", people.person_delete, name="crm-person-delete"),
    path(
        "crm/people/<uuid:external_id>/notes/",
        notes.person_note_create,
        name="crm-person-note-create",
    ),
    path(
        "crm/people/<uuid:external_id>/notes/<int:note_id>/delete/",
        notes.person_note_delete,
        name="crm-person-note-delete",
    ),
    # Organisations
    path("crm/organisations/", organisations.organisation_index, name="crm-organisation-index"),
    path(
        "crm/organisations/new/",
        organisations.organisation_create,
        name="crm-organisation-create",
    ),
    path(
        "crm/organisations/<uuid:external_id>/",
        organisations.organisation_show,
        name="crm-organisation-show",
    ),
    path(
        "crm/organisations/<uuid:external_id>/edit/",
        organisations.organisation_edit,
        name="crm-organisation-edit",
    ),
    path(
        "crm/organisations/<uuid:external_id>/delete/",
        organisations.organisation_delete,
        name="crm-organisation-delete",
    ),
    path(
        "crm/organisations/<uuid:external_id>/notes/",
        notes.organisation_note_create,
        name="crm-organisation-note-create",
    ),
    path(
        "crm/organisations/<uuid:external_id>/notes/<int:note_id>/delete/",
        notes.organisation_note_delete,
        name="crm-organisation-note-delete",
    ),
    # Leads
    path("crm/leads/", leads.lead_index, name="crm-lead-index"),
    path("crm/leads/new/", leads.lead_create, name="crm-lead-create"),
    path("crm/leads/<uuid:external_id>/", leads.lead_show, name="crm-lead-show"),
    path("crm/leads/<uuid:external_id>/edit/", leads.lead_edit, name="crm-lead-edit"),
    path("crm/leads/<uuid:external_id>/delete/", leads.lead_delete, name="crm-lead-delete"),
    path(
        "crm/leads/<uuid:external_id>/notes/",
        notes.lead_note_create,
        name="crm-lead-note-create",
    ),
    path(
        "crm/leads/<uuid:external_id>/notes/<int:note_id>/delete/",
        notes.lead_note_delete,
        name="crm-lead-note-delete",
    ),
]
