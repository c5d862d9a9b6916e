"""Settings → Chat Widgets: list, create, edit, activate/deactivate, delete, new key.

Every page needs the ``manage widgets`` permission. Widgets are not scoped per
agent: whoever may manage widgets manages all of them, as in the original.
Writes go through ``ChatService`` (via ``WidgetForm.save`` or directly).

Deleting is soft (the widget stops serving, its chats stay in the inbox); a
deleted widget can only be restored or purged for good, never edited, so the
pages of live widgets answer 404 for it and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from crm.chat import selectors
from crm.chat.forms import WidgetForm, WidgetPurgeForm
from crm.chat.models import ChatWidget
from crm.chat.services import ChatError, chat_service
from crm.typing import AuthedHttpRequest

PERMISSION = "crm_chat.manage_widgets"


def _get_widget_or_404(external_id: UUID, *, deleted: bool = False) -> ChatWidget:
    widget = selectors.widget_list(deleted=deleted).filter(external_id=external_id).first()
    if widget is None:
        raise Http404("No such chat widget.")
    return widget


def _edit_url(widget: ChatWidget) -> str:
    return reverse("crm-chat-widget-edit", args=[widget.external_id])


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_safe
def widget_index(request: AuthedHttpRequest) -> HttpResponse:
    """Every widget with its team, state, look, origins and conversation count.

    Deleted widgets get their own section with Restore and Delete permanently.
    """
    rows = list(selectors.widget_list(deleted=None))
    deleted = [(w.deleted_at, w) for w in rows if w.deleted_at is not None]
    context = {
        "widgets": [w for w in rows if w.deleted_at is None],
        # Latest deletion first.
        "deleted_widgets": [w for _, w in sorted(deleted, key=lambda pair: pair[0], reverse=True)],
    }
    return render(request, "crm_chat/widget_index.html", context)


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_create(request: AuthedHttpRequest) -> HttpResponse:
    """A new widget; on success the edit page shows its embed snippet."""
    return _widget_form(request, ChatWidget())


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_edit(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Change a widget's settings; also shows the preview, embed snippet and key."""
    return _widget_form(request, _get_widget_or_404(external_id))


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_POST
def widget_toggle(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Activate or deactivate; an inactive widget vanishes from every host site."""
    widget = _get_widget_or_404(external_id)
    try:
        chat_service.update_widget(widget=widget, is_active=not widget.is_active)
    except ChatError as exc:  # deleted in another tab meanwhile
        messages.error(request, exc.message)
        return redirect("crm-chat-widget-index")
    verb = "Activated" if widget.is_active else "Deactivated"
    messages.success(request, f"{verb} {widget.name}.")
    return redirect("crm-chat-widget-index")


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_delete(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, soft-delete on POST: the widget stops serving, its chats stay."""
    widget = _get_widget_or_404(external_id)
    return _confirm_then_act(
        request,
        widget,
        act=lambda: chat_service.delete_widget(widget=widget),
        done=f"Deleted {widget.name}. Its conversations stay in the inbox; "
        "restore the widget from Deleted widgets.",
        then=reverse("crm-chat-widget-index"),
        template="crm_chat/widget_confirm_delete.html",
    )


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_POST
def widget_restore(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Undo a delete: the widget serves again with the same key and settings."""
    widget = _get_widget_or_404(external_id, deleted=True)
    try:
        chat_service.restore_widget(widget=widget)
    except ChatError as exc:  # restored in another tab meanwhile
        messages.error(request, exc.message)
        return redirect("crm-chat-widget-index")
    messages.success(request, f"Restored {widget.name}. Its embed snippet works again.")
    return redirect("crm-chat-widget-index")


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_purge(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Destroy a deleted widget and all its chats, once its name is typed to confirm.

    Only deleted widgets get here (404 otherwise), so destroying chats always
    takes two deliberate steps; the page says exactly what will be destroyed.
    """
    widget = _get_widget_or_404(external_id, deleted=True)
    form = WidgetPurgeForm(request.POST if request.method == "POST" else None, widget=widget)
    if form.is_bound and form.is_valid():
        try:
            gone = chat_service.purge_widget(widget=widget)
        except ChatError as exc:  # restored or purged in another tab meanwhile
            messages.error(request, exc.message)
            return redirect("crm-chat-widget-index")
        messages.success(
            request,
            f"Permanently deleted {widget.name} with {_count(gone.conversations, 'conversation')} "
            f"and {_count(gone.messages, 'message')}.",
        )
        return redirect("crm-chat-widget-index")
    context = {
        "widget": widget,
        "form": form,
        "rows": selectors.widget_rows(widget=widget),
        "cancel_url": reverse("crm-chat-widget-index"),
    }
    return render(request, "crm_chat/widget_confirm_purge.html", context)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@login_required
@permission_required(PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def widget_regenerate(request: AuthedHttpRequest, external_id: UUID) -> HttpResponse:
    """Ask on GET, issue a new public key on POST (the old snippet stops working)."""
    widget = _get_widget_or_404(external_id)
    return _confirm_then_act(
        request,
        widget,
        act=lambda: chat_service.regenerate_public_key(widget=widget),
        done=f"Issued a new public key for {widget.name}. "
        "Replace the embed snippet on every site that uses it.",
        then=_edit_url(widget),
        template="crm_chat/widget_confirm_regenerate.html",
    )


def _confirm_then_act(
    request: AuthedHttpRequest,
    widget: ChatWidget,
    *,
    act: Callable[[], object],
    done: str,
    then: str,
    template: str,
) -> HttpResponse:
    """GET asks (``template``); POST acts, says ``done`` and goes to ``then``.

    A widget deleted in another tab meanwhile is refused by the service: the
    message says so and the list is shown instead.
    """
    if request.method != "POST":
        context = {"widget": widget, "cancel_url": _edit_url(widget)}
        return render(request, template, context)
    try:
        act()
    except ChatError as exc:
        messages.error(request, exc.message)
        return redirect("crm-chat-widget-index")
    messages.success(request, done)
    return redirect(then)


def _widget_form(request: AuthedHttpRequest, widget: ChatWidget) -> HttpResponse:
    creating = widget.pk is None
    # Taken before binding: an invalid form still writes its values onto the instance.
    heading = "New chat widget" if creating else f"Edit {widget.name}"
    form = WidgetForm(request.POST if request.method == "POST" else None, instance=widget)
    if form.is_bound and form.is_valid():
        try:
            widget = form.save()
        except ChatError as exc:  # deleted in another tab while this form was open
            messages.error(request, exc.message)
            return redirect("crm-chat-widget-index")
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
