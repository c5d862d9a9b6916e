"""Forms of the chat settings pages: validation only, ``ChatService`` does the writing."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from crm.chat.models import WEEKDAYS, ChatWidget
from crm.chat.services import chat_service, origins_from_text
from crm.core.models import Team

# A leading "#" is optional in the text box: people paste "2563eb" from design tools.
_COLOR_INPUT_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")
COLOR_ERROR = _("Enter a colour as # followed by six hex digits, for example #2563eb.")


_RANGE_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def hours_to_text(hours: dict[str, list[list[str]]]) -> str:
    lines = []
    for day in WEEKDAYS:
        if hours.get(day):
            lines.append(day + " " + " ".join(f"{a}-{b}" for a, b in hours[day]))
    return "\n".join(lines)


def hours_from_text(text: str) -> dict[str, list[list[str]]]:
    """Parse “mon 09:00-17:00 …” lines; each bad line gets its own message."""
    hours: dict[str, list[list[str]]] = {}
    errors = []
    for line in (text or "").splitlines():
        parts = line.lower().split()
        if not parts:
            continue
        day, ranges = parts[0][:3], parts[1:]
        if day not in WEEKDAYS or not ranges:
            errors.append(f"“{line.strip()}”: start with a weekday (mon … sun) and its hours.")
            continue
        for text_range in ranges:
            m = _RANGE_RE.match(text_range)
            start = end = ""
            if m:
                start = f"{int(m[1]):02d}:{m[2]}"
                end = f"{int(m[3]):02d}:{m[4]}"
            if not m or not (start < end <= "23:59") or int(m[2]) > 59 or int(m[4]) > 59:
                errors.append(f"“{text_range}” on {day}: write hours as 09:00-17:30.")
                continue
            hours.setdefault(day, []).append([start, end])
    if errors:
        raise ValidationError(errors, code="invalid_hours")
    return hours


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
    business_hours = forms.CharField(
        label=_("Business hours"),
        required=False,
        help_text=_(
            "One weekday per line with its opening hours, e.g. “mon 09:00-12:30 13:30-17:00”. "
            "Days not listed are closed. Leave empty to be open around the clock."
        ),
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
    )
    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        choices=(),
        required=False,
        help_text=_("Business hours are read in this time zone (UTC when left empty)."),
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
            "offline_message",
            "business_hours",
            "time_zone",
            "missed_chat_minutes",
        ]
        widgets = {
            "welcome_message": forms.Textarea(attrs={"rows": 2}),
            "offline_message": forms.Textarea(attrs={"rows": 2}),
        }
        help_texts = {
            "welcome_message": _("Shown to visitors when they open the chat."),
            "is_active": _("Inactive widgets disappear from every site that embeds them."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The model keeps a list; the textarea shows it one origin per line.
        self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins or [])
        self.initial["business_hours"] = hours_to_text(self.instance.business_hours or {})
        time_zone = self.fields["time_zone"]
        assert isinstance(time_zone, forms.ChoiceField)  # declared above
        time_zone.choices = [("", "UTC")] + [(z, z) for z in sorted(zoneinfo.available_timezones())]
        self.fields["missed_chat_minutes"].required = False

    def clean_color(self) -> str:
        match = _COLOR_INPUT_RE.match(self.cleaned_data["color"].strip())
        if match is None:
            raise ValidationError(COLOR_ERROR, code="invalid_color")
        return f"#{match.group(1).lower()}"

    def clean_allowed_origins(self) -> list[str]:
        # origins_from_text raises one message per bad line, each naming the line.
        return origins_from_text(self.cleaned_data["allowed_origins"])

    def clean_time_zone(self) -> str:
        return self.cleaned_data["time_zone"] or "UTC"

    def clean_missed_chat_minutes(self) -> int:
        value = self.cleaned_data["missed_chat_minutes"]
        return 5 if value is None else value

    def clean_business_hours(self) -> dict[str, list[list[str]]]:
        return hours_from_text(self.cleaned_data["business_hours"])

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


class WidgetPurgeForm(forms.Form):
    """Typing the widget's name confirms destroying it with all its chats.

    Checked here rather than in ``ChatService.purge_widget``: it guards a person's
    click, while the service's own guard (only deleted widgets) holds for every caller.
    """

    name = forms.CharField(
        label=_("Type the widget's name to confirm"),
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, widget: ChatWidget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.widget = widget

    def clean_name(self) -> str:
        typed = self.cleaned_data["name"]
        if typed != self.widget.name.strip():
            raise ValidationError(
                _("That is not the name of this widget; nothing was deleted. Type it exactly."),
                code="wrong_name",
            )
        return typed
