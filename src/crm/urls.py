from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="crm-dashboard", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("crm.core.urls")),
    path("", include("crm.chat.urls")),
]

# A database outage answers 503 + Retry-After (JSON on the widget's endpoints).
handler500 = "crm.core.unavailable.server_error"
