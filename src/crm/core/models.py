"""CRM core: teams, organisations, people, leads and notes.

Agents are Django auth users and roles are Django groups, so permissions,
sessions and the admin work the way every Django developer already knows.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from crm.conf import table_name


class Team(models.Model):
    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=120, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="crm_teams",
        blank=True,
        db_table=table_name("team_members"),
        verbose_name=_("members"),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = table_name("teams")
        ordering = ["name"]
        verbose_name = _("team")
        verbose_name_plural = _("teams")

    def __str__(self) -> str:
        return self.name


class Organisation(models.Model):
    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=255)
    website = models.URLField(_("website"), max_length=500, blank=True)
    description = models.TextField(_("description"), blank=True, max_length=10_000)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("owner"),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = table_name("organisations")
        ordering = ["name"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("crm-organisation-show", args=[self.external_id])


class Person(models.Model):
    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    first_name = models.CharField(_("first name"), max_length=120)
    last_name = models.CharField(_("last name"), max_length=120, blank=True)
    title = models.CharField(_("job title"), max_length=120, blank=True)
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="people",
        verbose_name=_("organisation"),
    )
    description = models.TextField(_("description"), blank=True, max_length=10_000)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("owner"),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = table_name("people")
        ordering = ["first_name", "last_name"]
        verbose_name = _("person")
        verbose_name_plural = _("people")

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("crm-person-show", args=[self.external_id])

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Email(models.Model):
    """An email address of a person; a person may have several, one primary."""

    TYPES = (("work", _("Work")), ("home", _("Home")), ("other", _("Other")))

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="emails")
    address = models.EmailField(_("email address"), max_length=254)
    type = models.CharField(_("type"), max_length=10, choices=TYPES, default="work")
    primary = models.BooleanField(_("primary"), default=False)

    class Meta:
        db_table = table_name("emails")
        ordering = ["-primary", "id"]
        indexes = [
            # Chat promotion links a visitor to an existing person by email address.
            models.Index(fields=["address"], name="crm_email_address_idx"),
        ]
        verbose_name = _("email address")
        verbose_name_plural = _("email addresses")

    def __str__(self) -> str:
        return self.address


class Phone(models.Model):
    TYPES = (("work", _("Work")), ("mobile", _("Mobile")), ("home", _("Home")))

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="phones")
    number = models.CharField(_("phone number"), max_length=40)
    # The number's digits only ("+44 20 7946 0001" -> "442079460001"), kept by save():
    # searches match a number however it was typed, through this column's index.
    digits = models.CharField(max_length=40, editable=False, db_index=True, default="")
    type = models.CharField(_("type"), max_length=10, choices=TYPES, default="work")
    primary = models.BooleanField(_("primary"), default=False)

    class Meta:
        db_table = table_name("phones")
        ordering = ["-primary", "id"]
        verbose_name = _("phone number")
        verbose_name_plural = _("phone numbers")

    def __str__(self) -> str:
        return self.number

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.digits = phone_digits(self.number)
        if kwargs.get("update_fields") is not None and "number" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "digits"}
        super().save(*args, **kwargs)


def phone_digits(number: str) -> str:
    """The ASCII digits of a phone number, in order (what a search compares)."""
    return "".join(c for c in number if "0" <= c <= "9")


class Lead(models.Model):
    STATUSES = (
        ("new", _("New")),
        ("contacted", _("Contacted")),
        ("qualified", _("Qualified")),
        ("won", _("Won")),
        ("lost", _("Lost")),
    )
    SOURCES = (
        ("web", _("Website")),
        ("chat", _("Chat")),
        ("email", _("Email")),
        ("phone", _("Phone")),
        ("referral", _("Referral")),
        ("other", _("Other")),
    )

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(_("title"), max_length=255)
    description = models.TextField(_("description"), blank=True, max_length=10_000)
    person = models.ForeignKey(
        Person,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="leads",
        verbose_name=_("person"),
    )
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="leads",
        verbose_name=_("organisation"),
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("owner"),
    )
    status = models.CharField(_("status"), max_length=20, choices=STATUSES, default="new")
    source = models.CharField(_("source"), max_length=20, choices=SOURCES, default="web")
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = table_name("leads")
        ordering = ["-created_at"]
        verbose_name = _("lead")
        verbose_name_plural = _("leads")

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("crm-lead-show", args=[self.external_id])


class Note(models.Model):
    """A note on exactly one person, organisation or lead.

    Three nullable foreign keys with a check constraint instead of a generic
    relation: the database itself guarantees a note always has one real parent.
    """

    person = models.ForeignKey(
        Person, on_delete=models.CASCADE, null=True, blank=True, related_name="notes"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, null=True, blank=True, related_name="notes"
    )
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, null=True, blank=True, related_name="notes"
    )
    content = models.TextField(_("note"), max_length=100_000)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = table_name("notes")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(person__isnull=False, organisation__isnull=True, lead__isnull=True)
                    | Q(person__isnull=True, organisation__isnull=False, lead__isnull=True)
                    | Q(person__isnull=True, organisation__isnull=True, lead__isnull=False)
                ),
                name="crm_note_exactly_one_parent",
            )
        ]
        verbose_name = _("note")
        verbose_name_plural = _("notes")

    def __str__(self) -> str:
        return self.content[:60]

    @property
    def parent(self) -> Person | Organisation | Lead | None:
        """What the note is on; ``None`` only for an unsaved note without one.

        A stored note always has exactly one (``crm_note_exactly_one_parent``).
        """
        return self.person or self.organisation or self.lead
