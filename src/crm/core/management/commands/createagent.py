from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.core import services
from crm.core.roles import ROLES


class Command(BaseCommand):
    help = "Create a CRM agent (a Django user) with one of the seeded roles."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="Login name of the new agent.")
        parser.add_argument("--email", default="", help="Email address for notifications.")
        parser.add_argument("--password", required=True, help="Initial password.")
        parser.add_argument("--role", default="Employee", choices=ROLES, help="Role to grant.")
        parser.add_argument("--first-name", default="", help="Given name.")
        parser.add_argument("--last-name", default="", help="Family name.")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            user = services.create_agent(
                username=opts["username"],
                email=opts["email"],
                password=opts["password"],
                role=opts["role"],
                first_name=opts["first_name"],
                last_name=opts["last_name"],
            )
        except services.AgentError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created agent {user.get_username()} with role {opts['role']}.")
