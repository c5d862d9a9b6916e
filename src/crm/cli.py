"""The ``crm`` command: run the product, load demo data, manage agents and widgets.

Sub-commands are thin: they set up Django and call management commands or
services, so the same operations are reachable through ``crm manage``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import ThreadingHTTPServer
from types import FrameType


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


class _Stop(BaseException):
    """A stop signal, raised in the main thread so ``finally`` blocks stop the children.

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` on the way
    (uvicorn's, Django's) may swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long the job worker may take to finish the email it is sending before it is
# killed; a killed job is requeued when the worker starts again (`crm worker`).
WORKER_STOP_TIMEOUT = 10.0
# Open connections (sockets, long polls) get this long to finish when the server stops.
GRACEFUL_SHUTDOWN_SECONDS = 5
# How long the start-up banner waits for the server to answer, then for the worker
# to send what was already due (the demo's emails), before giving up on printing.
READY_TIMEOUT = 60.0
JOBS_SETTLE_TIMEOUT = 20.0


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _die_by(signum: int) -> None:
    """Exit the way an unhandled signal would, once the children are gone.

    Supervisors read "killed by SIGTERM" as a clean stop, and shells see 128 + n.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def cmd_run(opts: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT, then stop every child process before exiting.

    Without our own handlers uvicorn re-raises SIGTERM with the default action after
    its graceful shutdown, which ends this process before any ``finally`` runs: the
    job worker would be left behind as an orphan (still sending emails) under
    systemd, Docker or supervisord, which signal only this process.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stop)
    try:
        _run(opts)
    except _Stop as stop:
        _die_by(stop.signum)


def _run(opts: argparse.Namespace) -> None:
    _setup_django()
    _check_database()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)

    demo_site = None
    worker = None
    try:
        if opts.demo_site:
            demo_site = _start_demo_site(opts)
        if not opts.no_worker:
            # Emails are sent by a separate process so a slow SMTP server never holds up
            # a request; it stops with us.
            worker = subprocess.Popen([sys.executable, "-m", "crm.cli", "worker"])
        if opts.workers > 1 and not os.environ.get("REDIS_URL"):
            print(
                "crm: warning: several workers without REDIS_URL share no channel layer; "
                "realtime falls back to polling between processes.",
                file=sys.stderr,
            )
        threading.Thread(
            target=_announce_when_ready,
            args=(opts, worker is not None),
            name="crm-run-banner",
            daemon=True,
        ).start()
        _serve(opts)
    finally:
        _stop_children(demo_site, worker)


def _start_demo_site(opts: argparse.Namespace) -> ThreadingHTTPServer:
    """Serve the demo host website, first allowing its origins on the demo widget.

    The demo widget was created for the default port; on any other port (or host) its
    iframe and API would refuse the demo page (403) without this.
    """
    from crm.chat.demo import allow_demo_site, demo_site_origins, demo_widget, serve_demo_site

    widget = demo_widget()
    if widget is None:
        sys.exit(
            "crm: --demo-site needs the demo widget: run `crm demo`, or restore the deleted "
            "widget in Settings → Chat Widgets."
        )
    widget = allow_demo_site(widget, demo_site_origins(opts.demo_site, host=opts.host))
    return serve_demo_site(host=opts.host, port=opts.demo_site, snippet=widget.embed_snippet())


def _stop_children(demo_site: ThreadingHTTPServer | None, worker: subprocess.Popen | None) -> None:
    """Stop the demo site and the job worker, within bounded time.

    Further stop signals are ignored meanwhile: a second Ctrl-C (or a supervisor that
    signals twice) must not cut the clean-up short and leave the worker running.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if demo_site is not None:
        demo_site.shutdown()
        demo_site.server_close()
    if worker is not None:
        worker.terminate()
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=WORKER_STOP_TIMEOUT)


def _connect_host(host: str) -> str:
    """An address to reach a server listening on ``host`` from this machine."""
    if host in {"", "0.0.0.0"}:
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _answers_http(host: str, port: int) -> bool:
    """True once anything answers an HTTP request on the port (any status)."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("HEAD", "/login/")
        conn.getresponse()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def _wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _jobs_due() -> bool:
    """Whether background jobs are due or running (e.g. the demo's emails).

    A database error counts as "none": the banner is worth more than the wait.
    """
    from django.db import DatabaseError, connection
    from django_tasks_db.models import DBTaskResult

    try:
        return DBTaskResult.objects.ready().exists() or DBTaskResult.objects.running().exists()
    except DatabaseError:
        return False
    finally:
        connection.close()


def _announce_when_ready(opts: argparse.Namespace, has_worker: bool) -> None:
    """Print where to go, and the demo login, once the server answers.

    Printed last on purpose: uvicorn's start-up log and the worker's first emails
    (the demo's "new chat" mails) would otherwise push it out of sight. Runs in a
    daemon thread; if the server never answers, nothing is printed.
    """
    host = _connect_host(opts.host)
    if not _wait_for(lambda: _answers_http(host, opts.port), READY_TIMEOUT):
        return
    if has_worker:
        _wait_for(lambda: not _jobs_due(), JOBS_SETTLE_TIMEOUT, interval=0.5)
    print(_banner(opts, host), flush=True)


def _banner(opts: argparse.Namespace, host: str) -> str:
    from crm.conf import public_url

    local = _url(host, opts.port)
    lines = [f"CRM:        {local}/crm/"]
    if public_url() != local:
        lines.append(f"Public URL: {public_url()}/crm/")
    if opts.demo_site:
        lines.append(f"Demo site:  {_url(host, opts.demo_site)}/  (the chat widget, embedded)")
    if login := _demo_login():
        lines.append(f"Login:      {login}")
    rule = "=" * 64
    return "\n".join([rule, "crm-chat is ready", *lines, rule])


def _demo_login() -> str:
    """The demo owner's login while its demo password still works, else ""."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import check_password
    from django.db import DatabaseError, connection

    from crm.core.demo import DEMO_PASSWORD, DEMO_USERNAME

    try:
        user = get_user_model().objects.filter(username=DEMO_USERNAME, is_active=True).first()
    except DatabaseError:
        return ""
    finally:
        connection.close()
    if user is None or not check_password(DEMO_PASSWORD, user.password):
        return ""
    return f"{DEMO_USERNAME} / {DEMO_PASSWORD}"


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
        # Bounded, so a stop signal ends the process within seconds even with sockets open.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
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
