"""Standalone settings for running crm-chat as its own product, read from the environment.

Every value has an embedded default so a fresh machine runs on SQLite with an
in-memory channel layer; production sets ``DATABASE_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from crm.conf import DEFAULTS
from crm.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(env_str("CRM_DATA_DIR") or Path.cwd() / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
TESTING = "pytest" in sys.modules or env_bool("CRM_TESTING")


def _secret_key() -> str:
    """Use ``SECRET_KEY`` when given, else one generated once and kept in the data dir.

    Keeping it on disk means sessions and signed tokens survive restarts of a
    single-box install without the operator ever having to think about it.
    """
    given = env_str("SECRET_KEY")
    if given:
        return given
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# The defaults live in crm.conf (one place for a host project and this one).
CRM_PUBLIC_URL = env_str("CRM_PUBLIC_URL", DEFAULTS["CRM_PUBLIC_URL"]).rstrip("/")
CRM_TABLE_PREFIX = env_str("CRM_TABLE_PREFIX", DEFAULTS["CRM_TABLE_PREFIX"])
CRM_MODULES = env_list("CRM_MODULES", DEFAULTS["CRM_MODULES"])


def _rate_limits() -> dict[str, tuple[int, int]]:
    """Defaults from crm.conf, overridden by CRM_CHAT_RATE_LIMITS, e.g.
    ``{"send_message": [60, 60]}`` (requests, window seconds) as JSON."""
    import json

    limits = dict(DEFAULTS["CRM_CHAT_RATE_LIMITS"])
    raw = env_str("CRM_CHAT_RATE_LIMITS")
    if not raw:
        return limits
    try:
        given = json.loads(raw)
        for action, (count, window) in given.items():
            if action not in limits or int(count) < 1 or int(window) < 1:
                raise ValueError(action)
            limits[action] = (int(count), int(window))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ImproperlyConfigured(
            "CRM_CHAT_RATE_LIMITS must be JSON like "
            f'{{"send_message": [30, 60]}} with actions {", ".join(limits)}; problem: {exc}'
        ) from exc
    return limits


CRM_CHAT_RATE_LIMITS = _rate_limits()
# How often an open socket reads its rights again besides revocation events
# (crm.chat.revocation); the default lives in crm.conf.
if env_str("CRM_CHAT_SOCKET_RECHECK_SECONDS"):
    CRM_CHAT_SOCKET_RECHECK_SECONDS = env_int("CRM_CHAT_SOCKET_RECHECK_SECONDS", 0, minimum=1)
if env_str("CRM_CHAT_SOCKET_DB_THREADS"):
    CRM_CHAT_SOCKET_DB_THREADS = env_int("CRM_CHAT_SOCKET_DB_THREADS", 4, minimum=1)
if env_str("CRM_HTTP_CONCURRENCY"):
    CRM_HTTP_CONCURRENCY = env_int("CRM_HTTP_CONCURRENCY", 0, minimum=1)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "django_htmx",
    "django_tasks",
    "django_tasks_db",
    "crm.core",
    "crm.chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "crm.core.csp.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "crm.core.middleware.ModuleGateMiddleware",
    "crm.chat.origins.PublicChatMiddleware",
]

ROOT_URLCONF = "crm.urls"
ASGI_APPLICATION = "crm.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "crm.core.context_processors.crm",
            ],
            "builtins": ["crm.core.templatetags.crm_modules"],
        },
    }
]


def _databases() -> dict:
    url = env_str("DATABASE_URL")
    if not url:
        return {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": DATA_DIR / "crm.sqlite3",
                # WAL lets readers run while one writer commits; IMMEDIATE takes the
                # write lock at BEGIN so concurrent writers queue on the busy timeout
                # instead of failing with "database is locked" on lock upgrade.
                "OPTIONS": {
                    "timeout": 20,
                    "transaction_mode": "IMMEDIATE",
                    "init_command": (
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                        "PRAGMA foreign_keys=ON;"
                    ),
                },
                "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
            }
        }
    try:
        config = dj_database_url.parse(url)
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
    if config["ENGINE"] == "django.db.backends.postgresql" and env_bool("CRM_DB_POOL", True):
        # Django's psycopg pool: under ASGI every request may run in a different
        # thread, so persistent per-thread connections would multiply; a pool doesn't.
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            # The sockets' database threads keep one connection each
            # (CRM_CHAT_SOCKET_DB_THREADS), requests take one each while they run
            # (at most CRM_HTTP_CONCURRENCY at once); the rest is headroom.
            "max_size": env_int("CRM_DB_POOL_SIZE", 16, minimum=1),
            "timeout": 10,
            # After a lost connection the pool retries with a doubling delay for up to
            # reconnect_timeout (psycopg's default: 5 minutes), so a 40 s database
            # restart kept every request failing for 24 s more. Giving up after a few
            # seconds lets the next request start a fresh attempt right away: service
            # is back within about two seconds of the database.
            "reconnect_timeout": 5,
        }
        config["CONN_MAX_AGE"] = 0
    return {"default": config}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "crm.core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CRM_TABLE_PREFIX,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Realtime events travel through crm.chat.realtime.hub: in the process, and over
# Redis pub/sub between processes when REDIS_URL is set. No Channels layer is used.

# Background jobs (chat emails): rows in the database, run by `crm worker`.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def _email() -> dict[str, object]:
    """EMAIL_URL (smtp://user:pass@host:587/?tls=True, console:, …) or EMAIL_HOST & co.

    Without either, mail is printed to the console, so a fresh install never fails
    to send and the operator sees what would have gone out.
    """
    url = env_str("EMAIL_URL")
    if url:
        import dj_email_url

        try:
            parsed = dj_email_url.parse(url)
        except Exception as exc:
            raise ImproperlyConfigured(f"EMAIL_URL is not a valid email URL: {exc}") from exc
        return {k: v for k, v in parsed.items() if v is not None}
    if env_str("EMAIL_HOST"):
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": env_str("EMAIL_HOST"),
            "EMAIL_PORT": env_int("EMAIL_PORT", 25, minimum=1),
            "EMAIL_HOST_USER": env_str("EMAIL_HOST_USER"),
            "EMAIL_HOST_PASSWORD": env_str("EMAIL_HOST_PASSWORD"),
            "EMAIL_USE_TLS": env_bool("EMAIL_USE_TLS", False),
            "EMAIL_USE_SSL": env_bool("EMAIL_USE_SSL", False),
            "EMAIL_TIMEOUT": env_int("EMAIL_TIMEOUT", 20, minimum=1),
        }
    return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}


globals().update(_email())
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "crm-chat <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "crm-dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders when collectstatic hasn't run (tests,
# a fresh checkout), so the product never depends on DEBUG to have its CSS.
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# No script reads the CSRF cookie (pages send the token from their forms' hidden input).
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", CRM_PUBLIC_URL.startswith("https://"))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS is opt-in: once a browser has seen it, the site can't go back to plain HTTP
# for that long, so the operator turns it on when HTTPS is there to stay.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)


def _proxy_ssl_header() -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto`` (value ``https``) or ``Name=value``.

    Only for a TLS-terminating proxy that always sets (and strips incoming copies of)
    that header: with it, a request is HTTPS when the header says so. ``crm run``
    already trusts ``X-Forwarded-Proto`` from ``FORWARDED_ALLOW_IPS`` through uvicorn.
    """
    raw = env_str("SECURE_PROXY_SSL_HEADER")
    if not raw:
        return None
    name, _, value = raw.partition("=")
    name, value = name.strip(), (value.strip() or "https")
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER must be a header name like X-Forwarded-Proto "
            f"(optionally =value, default https), not {raw!r}."
        )
    return "HTTP_" + name.upper().replace("-", "_"), value


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()


# The policy of every CRM page and the admin (crm/core/csp.py: the other kinds). No
# inline scripts, handlers, <style> blocks or style attributes anywhere in the agent UI
# or the admin (scripts style through the CSSOM, which the policy allows); htmx's own
# indicator <style> is switched off by a meta tag in the layout.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],  # + ws:// and wss:// of the request's host
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "object-src": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
