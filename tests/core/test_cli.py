"""The `crm` command: clear errors for bad arguments and an unreachable database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def crm(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    full_env.update(CRM_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-m", "crm.cli", *args],
        env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_unreachable_database_is_one_clear_sentence(tmp_path: Path) -> None:
    out = crm("demo", tmp_path=tmp_path, DATABASE_URL="postgres://nobody@127.0.0.1:1/none")
    assert out.returncode != 0
    assert out.stderr.startswith("crm: cannot reach the database (postgresql):")
    assert "Traceback" not in out.stderr


def test_bad_arguments_are_refused_with_usage(tmp_path: Path) -> None:
    out = crm("run", "--workers", "0", tmp_path=tmp_path)
    assert out.returncode == 2 and "--workers must be at least 1" in out.stderr
    out = crm("fly", tmp_path=tmp_path)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_demo_is_idempotent_and_prints_the_login(tmp_path: Path) -> None:
    first = crm("demo", tmp_path=tmp_path)
    second = crm("demo", tmp_path=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "Login: owner / owner-demo-1" in first.stdout
    assert "Demo site: http://127.0.0.1:8001/" in first.stdout
    count = crm("manage", "shell", "-c",
                "from crm.chat.models import ChatWidget as W; print(W.objects.count())",
                tmp_path=tmp_path)  # fmt: skip
    assert count.stdout.strip().splitlines()[-1] == "1"


def test_createwidget_prints_the_snippet_or_a_clear_error(tmp_path: Path) -> None:
    crm("manage", "migrate", "-v0", tmp_path=tmp_path)
    ok = crm("createwidget", "--name", "Shop", "--origin", "https://shop.example",
             tmp_path=tmp_path)  # fmt: skip
    assert ok.returncode == 0 and "/p/chat/" in ok.stdout and "<script>" in ok.stdout
    bad = crm("createwidget", "--name", "Shop", "--origin", "https://*.example",
              tmp_path=tmp_path)  # fmt: skip
    assert bad.returncode != 0 and "not an exact origin" in bad.stderr


def test_demo_prints_the_urls_of_the_public_url(tmp_path: Path) -> None:
    out = crm("demo", tmp_path=tmp_path, CRM_PUBLIC_URL="http://localhost:9100/")
    assert out.returncode == 0, out.stderr
    assert "CRM:   http://localhost:9100/crm/" in out.stdout
    # The demo site's port follows the CRM's (as `make run` serves it), and the demo
    # widget accepts that origin.
    assert "Demo site: http://localhost:9101/" in out.stdout
    origins = crm("manage", "shell", "-c",
                  "from crm.chat.models import ChatWidget as W; print(W.objects.get().allowed_origins)",
                  tmp_path=tmp_path)  # fmt: skip
    assert "'http://localhost:9101'" in origins.stdout


def test_a_deleted_demo_widget_stays_deleted_and_the_demo_site_says_so(tmp_path: Path) -> None:
    assert crm("demo", tmp_path=tmp_path).returncode == 0
    delete = crm("manage", "shell", "-c",
                 "from crm.chat.models import ChatWidget as W; from crm.chat.services import "
                 "chat_service as s; s.delete_widget(widget=W.objects.get())",
                 tmp_path=tmp_path)  # fmt: skip
    assert delete.returncode == 0, delete.stderr
    assert crm("demo", tmp_path=tmp_path).returncode == 0
    state = crm("manage", "shell", "-c",
                "from crm.chat.models import ChatWidget as W; "
                "print([w.deleted_at is not None for w in W.objects.all()])",
                tmp_path=tmp_path)  # fmt: skip
    assert state.stdout.strip().splitlines()[-1] == "[True]"
    port, site = str(free_port()), str(free_port())
    refused = crm("run", "--demo-site", site, "--no-worker", "--port", port, tmp_path=tmp_path)
    assert refused.returncode != 0 and "restore the deleted widget" in refused.stderr
