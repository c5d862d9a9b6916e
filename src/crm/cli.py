"""The ``crm`` command: run the product, load demo data, manage agents and widgets.

Sub-commands are thin: they set up Django and call management commands or
services, so the same operations are reachable through ``crm manage``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django

    django.setup()


def _check_database() -> None:
    """Fail with one clear sentence instead of a traceback when the DB is unreachable.

    PostgreSQL is probed with a plain connection and a short timeout: through the
    pool the real reason would hide behind "couldn't get a connection".
    """
    from django.db import connection

    try:
        if connection.vendor == "postgresql":
            import psycopg

            db = connection.settings_dict
            psycopg.connect(
                dbname=db["NAME"],
                user=db["USER"] or None,
                password=db["PASSWORD"] or None,
                host=db["HOST"] or None,
                port=db["PORT"] or None,
                connect_timeout=5,
            ).close()
        else:
            connection.ensure_connection()
            connection.close()
    except Exception as exc:  # Django's or psycopg's OperationalError, or a bad setting
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        sys.exit(
            f"crm: cannot reach the database ({connection.vendor}): {lines[0] if lines else exc!r}"
        )


def cmd_run(opts: argparse.Namespace) -> None:
    _setup_django()
    _check_database()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)

    if opts.demo_site:
        from crm.chat.demo import DEMO_WIDGET_NAME, serve_demo_site
        from crm.chat.models import ChatWidget

        widget = ChatWidget.objects.filter(name=DEMO_WIDGET_NAME).first()
        if widget is None:
            sys.exit("crm: --demo-site needs the demo widget; run `crm demo` first.")
        serve_demo_site(host=opts.host, port=opts.demo_site, snippet=widget.embed_snippet())
        print(
            f"Demo website with the chat widget: http://{opts.host}:{opts.demo_site}/", flush=True
        )
    worker = None
    if not opts.no_worker:
        # Emails are sent by a separate process so a slow SMTP server never holds up a
        # request; it stops with us.
        worker = subprocess.Popen([sys.executable, "-m", "crm.cli", "worker"])
    if opts.workers > 1 and not os.environ.get("REDIS_URL"):
        print(
            "crm: warning: several workers without REDIS_URL share no channel layer; "
            "realtime falls back to polling between processes.",
            file=sys.stderr,
        )
    print(
        f"crm-chat is serving on http://{opts.host}:{opts.port}/  (public URL {settings.CRM_PUBLIC_URL})",
        flush=True,
    )
    try:
        _serve(opts)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=15)


def _serve(opts: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "crm.asgi:application",
        host=opts.host,
        port=opts.port,
        workers=opts.workers,
        # wsproto without per-message-deflate keeps an idle socket near 30 KB instead of
        # ~130 KB (zlib state per socket, for chat frames of a few hundred bytes that
        # barely compress); see bench/README.md.
        ws="wsproto",
        ws_per_message_deflate=False,
        log_level=opts.log_level,
        lifespan="off",
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )


def cmd_manage(args: list[str]) -> None:
    _setup_django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["crm manage", *args])


def cmd_command(command: str, args: list[str]) -> None:
    """Run one of the product's management commands with its own argument parsing."""
    _setup_django()
    _check_database()
    from django.core.management import execute_from_command_line

    execute_from_command_line([f"crm {command}", command.replace("-", "_"), *args])


# Sub-commands that are management commands: ``crm NAME ...`` == ``crm manage NAME ...``.
COMMANDS = {
    "demo": "Migrate and create idempotent demo data; prints the login.",
    "createagent": "Create an agent (a user with a role).",
    "createwidget": "Create a chat widget and print its embed snippet.",
    "worker": "Run background jobs (chat emails).",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm", description="crm-chat: CRM with live chat.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="Migrate, then serve the product with uvicorn.")
    run.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    run.add_argument("--port", type=int, default=8000, help="TCP port to listen on.")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Worker processes; more than one needs REDIS_URL (shared channel layer).",
    )
    run.add_argument(
        "--no-worker",
        action="store_true",
        help="Don't start a background job worker (run `crm worker` yourself).",
    )
    run.add_argument(
        "--demo-site",
        type=int,
        default=0,
        metavar="PORT",
        help="Also serve the demo host website (the widget embedded) on this port.",
    )
    run.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    run.set_defaults(func=cmd_run)

    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text + " (see: crm NAME --help)")
    sub.add_parser("manage", help="Run any Django management command.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        cmd_command(args[0], args[1:])
        return
    if args and args[0] == "manage":
        cmd_manage(args[1:])
        return
    parser = build_parser()
    opts = parser.parse_args(args)
    if opts.workers < 1:
        parser.error("--workers must be at least 1")
    opts.func(opts)


if __name__ == "__main__":
    main()
