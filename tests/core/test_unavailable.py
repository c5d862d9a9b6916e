"""A stopped PostgreSQL gives clear 503s with Retry-After, and the product recovers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from crm.chat.services import chat_service
from crm.core.services import create_agent
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_a_database_outage_answers_503_and_recovers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker talks to PostgreSQL through a TCP proxy we can cut, like a DB restart."""
    import socket
    import threading

    widget = chat_service.create_widget(name="Shop")
    agent = create_agent(username="olivia", password="x", role="Owner", validate=False)
    client = Client()
    client.force_login(agent)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    db = connection.settings_dict
    db_port = int(db["PORT"] or 5432)
    proxy_port = free_port()
    cut = threading.Event()
    listener = socket.create_server(("127.0.0.1", proxy_port))
    listener.settimeout(0.2)
    stop = threading.Event()
    open_pairs: list[socket.socket] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while not cut.is_set() and (data := a.recv(65536)):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            if cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", db_port))
            open_pairs.extend([client, upstream])
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxy_port}/{db['NAME']}",
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_DB_POOL": "false",
        "SECRET_KEY": settings.SECRET_KEY,
    }
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "crm.asgi:application", "--port", str(port),
         "--lifespan", "off", "--log-level", "critical"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/p/chat/{widget.public_key}/api/visitor"
    try:
        _wait(f"http://127.0.0.1:{port}/login/")
        assert httpx.post(api, json={}, timeout=10).status_code == 201
        cut.set()  # the database goes away
        for s in open_pairs:
            with contextlib.suppress(OSError):
                s.close()
        down = httpx.post(api, json={}, timeout=10)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "5"
        assert down.json()["error"]["code"] == "unavailable"
        page = httpx.get(f"http://127.0.0.1:{port}/crm/", cookies=cookies, timeout=10)
        assert page.status_code == 503 and "Back in a moment" in page.text
        cut.clear()  # it comes back: the next requests succeed without a restart
        deadline = time.monotonic() + 20
        while (status := httpx.post(api, json={}, timeout=10).status_code) != 201:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)
        stop.set()
        listener.close()
