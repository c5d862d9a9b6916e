"""Files browsers fetch by a fixed path, outside ``/static/``."""

from __future__ import annotations

from functools import cache

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

FAVICON = "core/favicon.svg"


@cache
def _favicon_bytes() -> bytes:
    path = finders.find(FAVICON)
    if path is None:  # a packaging error, not a request error
        raise FileNotFoundError(FAVICON)
    with open(path, "rb") as f:
        return f.read()


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> HttpResponse:
    """The icon itself at ``/favicon.ico``, for pages that name none (admin, JSON, errors).

    Browsers request it from every origin they visit; answering 200 with the SVG
    (rather than a redirect) saves a round trip and keeps logs free of 404s.
    """
    return HttpResponse(_favicon_bytes(), content_type="image/svg+xml")
