"""Settings → Chat Widgets: list, create, edit, activate/deactivate, delete, new key.

Every page needs the ``manage widgets`` permission. Widgets are not scoped per
agent: whoever may manage widgets manages all of them, as in the original.
Writes go through ``ChatService`` (via ``WidgetForm.save`` or directly).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from crm.chat import selectors
from crm.chat.forms import WidgetForm
from crm.chat.models import ChatWidget
from crm.chat.services import chat_service

PERMISSION = "crm_chat.manage_widgets"


def _get_widget_or_404(external_id: UUID) -> ChatWidget:
    widget = selectors.widget_list().filter(external_id=external_id).first()
    if widget is None:
        raise Http404("No such chat widget.")
    return widget


def _edit_url(widget: ChatWidget) -> str:
    return reverse("crm-chat-widget-edit", args=[widget.external_id])


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_safe
def widget_index(request: HttpRequest) -> HttpResponse:
    """Every widget with its team, state, look, origins and conversation count."""
    widgets = list(selectors.widget_list().order_by("name", "id"))
    return render(request, "crm_chat/widget_index.html", {"widgets": widgets})


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_create(request: HttpRequest) -> HttpResponse:
    """A new widget; on success the edit page shows its embed snippet."""
    return _widget_form(request, ChatWidget())


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_edit(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """Change a widget's settings; also shows the preview, embed snippet and key."""
    return _widget_form(request, _get_widget_or_404(external_id))


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_POST
def widget_toggle(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """Activate or deactivate; an inactive widget vanishes from every host site."""
    widget = _get_widget_or_404(external_id)
    chat_service.update_widget(widget=widget, is_active=not widget.is_active)
    verb = "Activated" if widget.is_active else "Deactivated"
    messages.success(request, f"{verb} {widget.name}.")
    return redirect("crm-chat-widget-index")


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_delete(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, delete on POST."""
    widget = _get_widget_or_404(external_id)
    if request.method == "POST":
        chat_service.delete_widget(widget=widget)
        messages.success(request, f"Deleted {widget.name}.")
        return redirect("crm-chat-widget-index")
    count = widget.conversation_count  # type: ignore[attr-defined]
    context = {
        "object": widget,
        "kind": "widget",
        "consequences": (
            f"Its visitors and {count} conversation{'' if count == 1 else 's'} are deleted "
            "too, and the embed snippet stops working on every site."
        ),
        "cancel_url": _edit_url(widget),
    }
    return render(request, "core/confirm_delete.html", context)


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_regenerate(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, issue a new public key on POST (the old snippet stops working)."""
    widget = _get_widget_or_404(external_id)
    if request.method == "POST":
        chat_service.regenerate_public_key(widget=widget)
        messages.success(
            request,
            f"Issued a new public key for {widget.name}. "
            "Replace the embed snippet on every site that uses it.",
        )
        return redirect(_edit_url(widget))
    context = {"widget": widget, "cancel_url": _edit_url(widget)}
    return render(request, "crm_chat/widget_confirm_regenerate.html", context)


def _widget_form(request: HttpRequest, widget: ChatWidget) -> HttpResponse:
    creating = widget.pk is None
    # Taken before binding: an invalid form still writes its values onto the instance.
    heading = "New chat widget" if creating else f"Edit {widget.name}"
    form = WidgetForm(request.POST if request.method == "POST" else None, instance=widget)
    if form.is_bound and form.is_valid():
        widget = form.save()
        if creating:
            messages.success(
                request, f"Created {widget.name}. Paste the embed snippet into your site."
            )
        else:
            messages.success(request, f"Saved {widget.name}.")
        return redirect(_edit_url(widget))
    context: dict[str, Any] = {
        "form": form,
        "widget": None if creating else widget,
        "heading": heading,
        "preview_color": form.preview_color(),
        "cancel_url": reverse("crm-chat-widget-index"),
    }
    return render(request, "crm_chat/widget_form.html", context)
