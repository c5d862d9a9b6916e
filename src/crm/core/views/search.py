"""The CRM-wide search page (the sidebar's search box)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from crm.core.search import search_everything
from crm.typing import AuthedHttpRequest


@login_required
@require_GET
def search(request: AuthedHttpRequest) -> HttpResponse:
    """Chats, people, organisations and leads matching ``q``, a few of each."""
    text = request.GET.get("q", "")
    sections = search_everything(user=request.user, text=text)
    return render(request, "core/search_results.html", {"q": text, "sections": sections})
