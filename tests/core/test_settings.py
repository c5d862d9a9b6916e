"""Settings are parsed from the environment strictly, with embedded defaults."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _settings_in_subprocess(tmp_path: Path, **env: str) -> dict:
    """Import crm.settings in a clean interpreter with exactly this environment."""
    code = (
        "import json, crm.settings as s;"
        "db = s.DATABASES['default'];"
        "print(json.dumps({'engine': db['ENGINE'], 'name': str(db['NAME']),"
        " 'options': {k: str(v) for k, v in db.get('OPTIONS', {}).items()},"
        " 'cache': s.CACHES['default']['BACKEND'],"
        " 'redis': s.REDIS_URL, 'debug': s.DEBUG,"
        " 'prefix': s.CRM_TABLE_PREFIX, 'modules': s.CRM_MODULES, 'secret': s.SECRET_KEY}))"
    )
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    base.update({"CRM_DATA_DIR": str(tmp_path), "CRM_TESTING": "1"}, **env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=base, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise AssertionError(out.stderr)
    return json.loads(out.stdout)


def test_it_defaults_to_sqlite_with_wal_and_in_process_events(tmp_path: Path) -> None:
    s = _settings_in_subprocess(tmp_path)
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["name"] == str(tmp_path / "crm.sqlite3")
    assert "journal_mode=WAL" in s["options"]["init_command"]
    assert s["options"]["timeout"] == "20"
    assert s["cache"].endswith("LocMemCache")
    assert not s["redis"]  # the realtime hub stays inside the process
    assert s["debug"] is False
    assert s["prefix"] == "crm_"
    assert s["modules"] == ["chat"]


def test_it_keeps_a_generated_secret_key_in_the_data_dir(tmp_path: Path) -> None:
    first = _settings_in_subprocess(tmp_path)["secret"]
    second = _settings_in_subprocess(tmp_path)["secret"]
    assert first == second and len(first) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert _settings_in_subprocess(tmp_path, SECRET_KEY="given")["secret"] == "given"


def test_it_reads_a_postgres_url(tmp_path: Path) -> None:
    s = _settings_in_subprocess(tmp_path, DATABASE_URL="postgres://u:p@db.example:5433/crm")
    assert s["engine"] == "django.db.backends.postgresql"
    assert s["name"] == "crm"
    assert "pool" in s["options"]


def test_it_uses_redis_when_configured(tmp_path: Path) -> None:
    s = _settings_in_subprocess(tmp_path, REDIS_URL="redis://127.0.0.1:6379/3")
    assert s["cache"] == "crm.core.cache.RedisCache"  # Django's, one client per pool
    assert s["redis"] == "redis://127.0.0.1:6379/3"  # the realtime hub's pub/sub too


def test_it_reads_email_settings(tmp_path: Path) -> None:
    code = (
        "import json, crm.settings as s; print(json.dumps([getattr(s, k, None) for k in "
        "('EMAIL_BACKEND', 'EMAIL_HOST', 'EMAIL_PORT', 'EMAIL_USE_TLS')]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")}
    env.update(CRM_DATA_DIR=str(tmp_path), CRM_TESTING="1")
    run = lambda **e: json.loads(  # noqa: E731
        subprocess.run([sys.executable, "-c", code], env={**env, **e}, capture_output=True,
                       text=True, check=True).stdout
    )  # fmt: skip
    assert run()[0] == "django.core.mail.backends.console.EmailBackend"
    assert run(EMAIL_URL="smtp://u:p@mail.example:587/?tls=True") == [
        "django.core.mail.backends.smtp.EmailBackend", "mail.example", 587, True,
    ]  # fmt: skip
    assert run(EMAIL_HOST="smtp.example", EMAIL_PORT="2525")[1:3] == ["smtp.example", 2525]


def test_it_parses_modules_and_prefix(tmp_path: Path) -> None:
    s = _settings_in_subprocess(tmp_path, CRM_MODULES="", CRM_TABLE_PREFIX="acme_")
    assert s["modules"] == []
    assert s["prefix"] == "acme_"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("DEBUG", "maybe", "DEBUG must be one of"), ("CRM_DB_POOL_SIZE", "x", "must be an integer")],
)
def test_it_rejects_bad_values(tmp_path: Path, name: str, value: str, message: str) -> None:
    env = {name: value}
    if name == "CRM_DB_POOL_SIZE":
        env["DATABASE_URL"] = "postgres://u@h/db"
    with pytest.raises(AssertionError, match=message):
        _settings_in_subprocess(tmp_path, **env)


def _tables_after_migrate(tmp_path: Path, prefix: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(CRM_DATA_DIR=str(tmp_path), CRM_TABLE_PREFIX=prefix, CRM_TESTING="1")
    subprocess.run(
        [sys.executable, "-m", "crm.cli", "manage", "migrate", "--noinput", "-v0"],
        env=env,
        check=True,
        cwd=ROOT,
    )
    with sqlite3.connect(tmp_path / "crm.sqlite3") as db:
        return {r[0] for r in db.execute("select name from sqlite_master where type='table'")}


@pytest.mark.parametrize("prefix", ["crm_", "acme_"])
def test_it_prefixes_every_product_table(tmp_path: Path, prefix: str) -> None:
    tables = _tables_after_migrate(tmp_path, prefix)
    expected = {
        "teams", "team_members", "organisations", "people", "emails", "phones", "leads", "notes",
        "chat_widgets", "chat_visitors", "chat_conversations", "chat_messages",
        "chat_visitor_page_views",
    }  # fmt: skip
    assert {f"{prefix}{t}" for t in expected} <= tables
    django_own = {"django_migrations", "django_session", "django_content_type", "django_admin_log"}
    third_party = {t for t in tables if t.startswith(("auth_", "sqlite_", "django_"))}
    product = tables - django_own - third_party
    assert all(t.startswith(prefix) for t in product), product
