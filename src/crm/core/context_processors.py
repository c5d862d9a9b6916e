from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from crm.conf import crm_settings


def crm(request: HttpRequest) -> dict[str, Any]:
    """Values the layout needs on every page (enabled modules for the sidebar)."""
    return {"crm_modules": list(crm_settings.CRM_MODULES)}
