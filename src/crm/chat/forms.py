"""Forms of the chat settings pages: validation only, ``ChatService`` does the writing."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from crm.chat.models import ChatWidget
from crm.chat.services import chat_service, origins_from_text
from crm.core.models import Team

# A leading "#" is optional in the text box: people paste "2563eb" from design tools.
_COLOR_INPUT_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")
COLOR_ERROR = _("Enter a colour as # followed by six hex digits, for example #2563eb.")


class WidgetForm(forms.ModelForm):
    """Create or edit a chat widget.

    Validation runs the model's own checks (ModelForm's ``full_clean``), but
    ``save`` goes through ``ChatService`` so the service stays the only writer.
    """

    # The text box is the authoritative value; the page adds a colour picker that
    # settings.js keeps in step with it, so the form works without JavaScript too.
    color = forms.CharField(
        label=_("Colour"),
        help_text=_("The launcher colour, as #RRGGBB."),
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "data-color-text": ""}
        ),
    )
    allowed_origins = forms.CharField(
        label=_("Allowed origins"),
        required=False,
        help_text=_(
            "One website origin per line, such as https://www.example.com (no paths or "
            "wildcards). Leave empty to allow any site."
        ),
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
    )
    team = forms.ModelChoiceField(
        label=_("Team"),
        queryset=Team.objects.order_by("name"),
        required=False,
        empty_label=_("No team"),
    )

    class Meta:
        model = ChatWidget
        fields = [
            "name",
            "welcome_message",
            "color",
            "position",
            "allowed_origins",
            "team",
            "is_active",
        ]
        widgets = {"welcome_message": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "welcome_message": _("Shown to visitors when they open the chat."),
            "is_active": _("Inactive widgets disappear from every site that embeds them."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The model keeps a list; the textarea shows it one origin per line.
        self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins or [])

    def clean_color(self) -> str:
        match = _COLOR_INPUT_RE.match(self.cleaned_data["color"].strip())
        if match is None:
            raise ValidationError(COLOR_ERROR, code="invalid_color")
        return f"#{match.group(1).lower()}"

    def clean_allowed_origins(self) -> list[str]:
        # origins_from_text raises one message per bad line, each naming the line.
        return origins_from_text(self.cleaned_data["allowed_origins"])

    def preview_color(self) -> str:
        """The colour the preview starts with: what was typed if valid, else the saved one.

        ``<input type=color>`` turns anything but #rrggbb into black, so an invalid
        entry must never reach it.
        """
        match = _COLOR_INPUT_RE.match(str(self["color"].value() or "").strip())
        return f"#{match.group(1).lower()}" if match else self.instance.color

    def save(self, commit: bool = True) -> ChatWidget:
        """Create or update the widget through ChatService."""
        if not commit:
            raise ValueError("WidgetForm always saves through ChatService; use commit=True.")
        fields = {name: self.cleaned_data[name] for name in self.Meta.fields}
        if self.instance.pk is None:
            self.instance = chat_service.create_widget(**fields)
        else:
            self.instance = chat_service.update_widget(widget=self.instance, **fields)
        return self.instance
