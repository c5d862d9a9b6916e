from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from crm.chat.notifications import requeue_orphaned_tasks


class Command(BaseCommand):
    help = "Run background jobs (chat emails); requeues jobs a killed worker left running."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--id",
            default=f"{socket.gethostname()}-worker",
            help="Stable name of this worker; a restart under the same name resumes its jobs.",
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="Seconds between polls when idle."
        )
        parser.add_argument(
            "--lease-minutes",
            type=int,
            default=15,
            help="A job running longer than this is assumed to belong to a dead worker.",
        )
        parser.add_argument(
            "--batch", action="store_true", help="Exit when no job is ready (for cron or tests)."
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        requeued = requeue_orphaned_tasks(
            worker_id=opts["id"], lease=timedelta(minutes=opts["lease_minutes"])
        )
        if requeued:
            self.stdout.write(f"Requeued {requeued} job(s) left running by a stopped worker.")
        db_opts: dict[str, Any] = {
            "worker_id": opts["id"],
            "interval": opts["interval"],
            "startup_delay": False,
        }
        if opts["batch"]:
            db_opts["batch"] = True
        call_command("db_worker", **db_opts)
