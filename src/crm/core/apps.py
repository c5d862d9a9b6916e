from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "crm.core"
    label = "crm_core"
    verbose_name = "CRM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from crm.core import search  # noqa: F401 - registers the core's search sections
        from crm.core.roles import seed_roles_after_migrate

        post_migrate.connect(seed_roles_after_migrate, dispatch_uid="crm_seed_roles")
