"""Dashboard and the settings index."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from crm.core import selectors
from crm.typing import AuthedHttpRequest


@login_required
def dashboard(request: AuthedHttpRequest) -> HttpResponse:
    """Landing page after login: record counts and the newest leads."""
    return render(request, "core/dashboard.html", selectors.dashboard_summary(user=request.user))


@login_required
def settings_index(request: AuthedHttpRequest) -> HttpResponse:
    """Entry to the configuration pages the user may manage."""
    return render(request, "core/settings.html")
