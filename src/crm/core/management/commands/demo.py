from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from crm.conf import public_url
from crm.core.demo import DEMO_PASSWORD, DEMO_USERNAME, load_core_demo


class Command(BaseCommand):
    help = "Migrate and load idempotent demo data (agents, people, leads and a chat widget)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-migrate", action="store_true", help="Skip running migrations first."
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        load_core_demo()
        # Each installed module adds its own demo data through its app config's
        # ``load_demo`` hook (the chat module: a widget and conversations), so the
        # core knows nothing of the modules.
        for config in apps.get_app_configs():
            load_demo = getattr(config, "load_demo", None)
            if callable(load_demo):
                for line in load_demo():
                    self.stdout.write(line)
        self.stdout.write(f"CRM:   {public_url()}/crm/")
        self.stdout.write(f"Login: {DEMO_USERNAME} / {DEMO_PASSWORD}")
