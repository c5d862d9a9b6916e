from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.chat.services import chat_service
from crm.core.models import Team


class Command(BaseCommand):
    help = "Create a chat widget and print its public key and embed snippet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Internal name of the widget.")
        parser.add_argument(
            "--origin",
            action="append",
            default=[],
            help="An exact origin allowed to embed it, e.g. https://www.example.com (repeatable).",
        )
        parser.add_argument("--welcome", default="Hi! How can we help?", help="Welcome message.")
        parser.add_argument("--color", default="#2563eb", help="Colour as #RRGGBB.")
        parser.add_argument(
            "--position", default="bottom-right", choices=["bottom-right", "bottom-left"]
        )
        parser.add_argument("--team", default="", help="Name of the team that answers it.")

    def handle(self, *args: Any, **opts: Any) -> None:
        team = None
        if opts["team"]:
            team = Team.objects.filter(name=opts["team"]).first()
            if team is None:
                raise CommandError(f"There is no team named {opts['team']!r}.")
        try:
            widget = chat_service.create_widget(
                name=opts["name"],
                welcome_message=opts["welcome"],
                color=opts["color"],
                position=opts["position"],
                allowed_origins="\n".join(opts["origin"]),
                team=team,
            )
        except ValidationError as exc:
            raise CommandError("The widget is not valid: " + " ".join(exc.messages)) from exc
        self.stdout.write(f"Public key: {widget.public_key}")
        self.stdout.write("Embed snippet:")
        self.stdout.write(widget.embed_snippet())
