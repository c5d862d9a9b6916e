from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "crm.core"
    label = "crm_core"
    verbose_name = "CRM"
    default_auto_field = "django.db.models.BigAutoField"
