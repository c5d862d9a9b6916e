"""Security headers on every kind of page, and the cookie and HSTS settings behind them.

Every page answers with the policy of its kind:

* CRM pages and the admin: the strict agent policy (``script-src 'self'``, sockets only
  to the own host, ``frame-ancestors 'none'``) plus ``X-Frame-Options: DENY``;
* the widget's iframe page: its own policy, framable only by the widget's allowed
  origins (no ``X-Frame-Options``, which can't name them);
* the loader script, the JSON API and the inbox's JSON endpoints: a locked-down
  ``default-src 'none'; frame-ancestors 'none'``;

and all of them ``X-Content-Type-Options: nosniff``, ``Cross-Origin-Opener-Policy:
same-origin`` and a ``Referrer-Policy`` that never sends a CRM URL to another site. Over HTTPS with ``SECURE_HSTS_SECONDS`` set, every page
also carries ``Strict-Transport-Security``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.http import HttpResponse
from django.test import Client, RequestFactory

from crm.chat.models import ChatConversation
from crm.core.models import Lead, Organisation, Person
from crm.core.unavailable import server_error
from tests.chat.conftest import ChatWorld, make_world

SHOP = "https://shop.example"  # the one origin the world's main widget allows
HOST = "testserver"
CRM_POLICY = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'", f"ws://{HOST}", f"wss://{HOST}"},
    "frame-ancestors": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "object-src": {"'none'"},
}
LOCKED_DOWN = {"default-src": {"'none'"}, "frame-ancestors": {"'none'"}}
# Referrer policies that never send a CRM path (chat ids, people) to another site.
SAFE_REFERRER_POLICIES = {"same-origin", "no-referrer", "strict-origin"}


def policy(response: HttpResponse) -> dict[str, set[str]]:
    header = response.get("Content-Security-Policy")
    assert header, "no Content-Security-Policy"
    directives: dict[str, set[str]] = {}
    for part in header.split(";"):
        if part.strip():
            name, *values = part.split()
            assert name not in directives, f"{name} given twice in {header!r}"
            directives[name] = set(values)
    return directives


@dataclass
class Scene:
    world: ChatWorld
    conversation: ChatConversation
    person: Person
    organisation: Organisation
    lead: Lead
    agent: Client
    anonymous: Client


@dataclass(frozen=True)
class Page:
    name: str
    kind: str  # crm | widget | widget-missing | locked
    who: str  # agent | anonymous
    path: Callable[[Scene], str]
    method: str = "get"
    status: int = 200
    origin: str | None = None
    body: Any = None


def _conv(s: Scene) -> str:
    return str(s.conversation.external_id)


PAGES = [
    Page("login", "crm", "anonymous", lambda s: "/login/"),
    Page("sign-in redirect", "crm", "anonymous", lambda s: "/crm/", status=302),
    Page("dashboard", "crm", "agent", lambda s: "/crm/"),
    Page("people list", "crm", "agent", lambda s: "/crm/people/"),
    Page("person detail", "crm", "agent", lambda s: s.person.get_absolute_url()),
    Page("person form (new)", "crm", "agent", lambda s: "/crm/people/new/"),
    Page("person form (edit)", "crm", "agent", lambda s: f"/crm/people/{s.person.external_id}/edit/"),
    Page("organisations list", "crm", "agent", lambda s: "/crm/organisations/"),
    Page("organisation detail", "crm", "agent", lambda s: s.organisation.get_absolute_url()),
    Page("organisation form (new)", "crm", "agent", lambda s: "/crm/organisations/new/"),
    Page(
        "organisation form (edit)", "crm", "agent",
        lambda s: f"/crm/organisations/{s.organisation.external_id}/edit/",
    ),
    Page("leads list", "crm", "agent", lambda s: "/crm/leads/"),
    Page("lead detail", "crm", "agent", lambda s: s.lead.get_absolute_url()),
    Page("lead form (new)", "crm", "agent", lambda s: "/crm/leads/new/"),
    Page("lead form (edit)", "crm", "agent", lambda s: f"/crm/leads/{s.lead.external_id}/edit/"),
    Page("not found", "crm", "agent", lambda s: "/crm/people/00000000-0000-0000-0000-000000000000/", status=404),
    Page("chat inbox", "crm", "agent", lambda s: "/crm/chat/"),
    Page("chat inbox (htmx search)", "crm", "agent", lambda s: "/crm/chat/?q=x"),
    Page("conversation", "crm", "agent", lambda s: f"/crm/chat/{_conv(s)}/"),
    Page("settings", "crm", "agent", lambda s: "/crm/settings/"),
    Page("widget settings list", "crm", "agent", lambda s: "/crm/chat-widgets/"),
    Page("widget settings (new)", "crm", "agent", lambda s: "/crm/chat-widgets/new/"),
    Page(
        "widget settings (edit)", "crm", "agent",
        lambda s: f"/crm/chat-widgets/{s.world.widget.external_id}/edit/",
    ),
    Page("admin index", "crm", "agent", lambda s: "/admin/"),
    Page("admin login", "crm", "anonymous", lambda s: "/admin/login/"),
    Page("admin list", "crm", "agent", lambda s: "/admin/crm_chat/chatmessage/"),
    Page("admin form", "crm", "agent", lambda s: f"/admin/crm_core/person/{s.person.pk}/change/"),
    Page("inbox unread (JSON)", "locked", "agent", lambda s: "/crm/chat/unread/"),
    Page("inbox messages (JSON)", "locked", "agent", lambda s: f"/crm/chat/{_conv(s)}/messages/"),
    Page("admin i18n script", "locked", "agent", lambda s: "/admin/jsi18n/"),
    Page("public loader", "locked", "anonymous", lambda s: f"/p/chat/{s.world.widget.public_key}.js"),
    Page("unknown loader", "locked", "anonymous", lambda s: "/p/chat/nope.js", status=404),
    Page("iframe page", "widget", "anonymous", lambda s: f"/p/chat/{s.world.widget.public_key}"),
    Page("iframe page (missing)", "widget-missing", "anonymous", lambda s: "/p/chat/nope", status=404),
    Page(
        "API identify", "locked", "anonymous", lambda s: f"/p/chat/{s.world.widget.public_key}/api/visitor",
        method="post", status=201, origin=SHOP, body={},
    ),
    Page(
        "API refused origin", "locked", "anonymous",
        lambda s: f"/p/chat/{s.world.widget.public_key}/api/visitor",
        method="post", status=403, origin="https://evil.example", body={},
    ),
    Page("API schema", "locked", "anonymous", lambda s: "/p/chat/api/openapi.json"),
    Page("static file", "locked", "anonymous", lambda s: "/static/core/crm.css"),
]  # fmt: skip
HEADERS_PER_PAGE = (
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Cross-Origin-Opener-Policy",
    "Referrer-Policy",
    "framing",
)


@pytest.fixture
def scene(db: None) -> Scene:
    world = make_world()
    visitor, conv = world.visitor, world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=visitor, body="Hi")
    organisation = Organisation.objects.create(name="Acme Ltd")
    person = Person.objects.create(first_name="Ada", organisation=organisation)
    lead = Lead.objects.create(title="Renewal", person=person, organisation=organisation)
    agent = Client()
    agent.force_login(world.owner)
    return Scene(world, conv, person, organisation, lead, agent, Client())


def fetch(scene: Scene, page: Page, **extra: Any) -> HttpResponse:
    client = scene.agent if page.who == "agent" else scene.anonymous
    headers = {"Origin": page.origin} if page.origin else {}
    if page.method == "get":
        response = client.get(page.path(scene), headers=headers, **extra)
    else:
        response = client.generic(
            page.method.upper(), page.path(scene), json.dumps(page.body), "application/json",
            headers=headers, **extra,
        )  # fmt: skip
    assert response.status_code == page.status, (page.name, response.status_code)
    return response


def check_page(page: Page, response: HttpResponse) -> list[str]:
    """Every header check of one page; returns what is wrong (empty when all is well)."""
    problems = []
    csp = policy(response)
    if page.kind == "crm":
        if csp != CRM_POLICY:
            problems.append(f"CSP {csp}")
    elif page.kind == "locked":
        if csp != LOCKED_DOWN:
            problems.append(f"CSP {csp}")
    elif page.kind == "widget":
        expected = {
            "default-src": {"'none'"},
            "script-src": {"'self'"},
            "frame-ancestors": {"'self'", SHOP},
            "base-uri": {"'none'"},
            "form-action": {"'none'"},
        }
        own_socket = {f"ws://{HOST}", f"wss://{HOST}"} & csp.get("connect-src", set())
        if any(csp.get(k) != v for k, v in expected.items()) or not own_socket:
            problems.append(f"CSP {csp}")
    elif page.kind == "widget-missing" and (
        csp.get("default-src") != {"'none'"} or "script-src" in csp
    ):
        problems.append(f"CSP {csp}")
    if response.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"X-Content-Type-Options {response.get('X-Content-Type-Options')!r}")
    # A page that opens or is opened by another site's window keeps no handle to it.
    if response.get("Cross-Origin-Opener-Policy") != "same-origin":
        problems.append(
            f"Cross-Origin-Opener-Policy {response.get('Cross-Origin-Opener-Policy')!r}"
        )
    if response.get("Referrer-Policy") not in SAFE_REFERRER_POLICIES:
        problems.append(f"Referrer-Policy {response.get('Referrer-Policy')!r}")
    if page.kind in {"widget", "widget-missing"}:
        # Framed by other sites on purpose: allowed by frame-ancestors / by design.
        if "X-Frame-Options" in response:
            problems.append("X-Frame-Options on a page other sites must frame")
    elif csp.get("frame-ancestors") != {"'none'"} or (
        # Pages also say it the old way; static files (served before that middleware)
        # rely on frame-ancestors alone.
        page.kind == "crm" and response.get("X-Frame-Options") != "DENY"
    ):
        problems.append(f"framing {response.get('X-Frame-Options')!r} {csp.get('frame-ancestors')}")
    return [f"{page.name}: {p}" for p in problems]


class SecurityHeadersTests:
    def test_every_page_has_the_headers_of_its_kind(self, scene: Scene) -> None:
        problems = []
        for page in PAGES:
            response = fetch(scene, page)
            problems += check_page(page, response)
            assert "Strict-Transport-Security" not in response, page.name  # off by default
        assert not problems, "\n".join(problems)
        kinds = {page.kind for page in PAGES}
        assert kinds == {"crm", "locked", "widget", "widget-missing"}
        assert len(PAGES) * len(HEADERS_PER_PAGE) >= 190

    def test_over_https_with_hsts_every_page_also_has_strict_transport_security(
        self, scene: Scene, settings
    ) -> None:
        settings.SECURE_HSTS_SECONDS = 31_536_000
        settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
        problems = []
        for page in PAGES:
            response = fetch(scene, page, secure=True)
            problems += check_page(page, response)
            hsts = response.get("Strict-Transport-Security")
            if hsts != "max-age=31536000; includeSubDomains":
                problems.append(f"{page.name}: HSTS {hsts!r}")
        assert not problems, "\n".join(problems)

    def test_hsts_is_never_sent_over_plain_http(self, scene: Scene, settings) -> None:
        settings.SECURE_HSTS_SECONDS = 3600
        response = scene.anonymous.get("/login/")
        assert "Strict-Transport-Security" not in response

    def test_a_proxy_header_counts_only_when_configured(self, scene: Scene, settings) -> None:
        settings.SECURE_HSTS_SECONDS = 3600
        forwarded = {"X-Forwarded-Proto": "https"}
        # Not configured: anyone could send the header, so it means nothing.
        assert "Strict-Transport-Security" not in scene.anonymous.get("/login/", headers=forwarded)
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        response = scene.anonymous.get("/login/", headers=forwarded)
        assert response["Strict-Transport-Security"] == "max-age=3600"
        assert "Strict-Transport-Security" not in scene.anonymous.get("/login/")

    def test_the_socket_source_follows_the_host_the_page_came_from(self, scene: Scene) -> None:
        response = scene.agent.get("/crm/", HTTP_HOST="localhost:8000")
        assert policy(response)["connect-src"] == {
            "'self'",
            "ws://localhost:8000",
            "wss://localhost:8000",
        }

    def test_the_outage_page_allows_only_its_own_inline_style(self) -> None:
        request = RequestFactory().get("/crm/")
        try:
            raise OperationalError("connection refused")
        except OperationalError:
            response = server_error(request)
        assert response.status_code == 503
        csp = policy(response)
        assert csp["default-src"] == {"'none'"} and csp["style-src"] == {"'unsafe-inline'"}
        assert csp["frame-ancestors"] == {"'none'"} and "script-src" not in csp

    def test_public_widget_endpoints_set_no_cookies(self, scene: Scene) -> None:
        for page in PAGES:
            if page.path(scene).startswith("/p/chat/"):
                assert not fetch(scene, page).cookies, page.name


def _cookies(response: HttpResponse) -> dict[str, Any]:
    jar = SimpleCookie()
    for morsel in response.cookies.values():
        jar.load(morsel.OutputString())
    return {name: jar[name] for name in jar}


class CookieTests:
    def _log_in(self, scene: Scene) -> tuple[HttpResponse, HttpResponse]:
        from crm.core.services import create_agent

        create_agent(username="kim", password="kim-pass-123", role="Employee", validate=False)
        client = Client(enforce_csrf_checks=True)
        form = client.get("/login/")
        token = client.cookies[django_settings.CSRF_COOKIE_NAME].value
        done = client.post(
            "/login/",
            {"username": "kim", "password": "kim-pass-123", "csrfmiddlewaretoken": token},
        )
        assert done.status_code == 302, done.content[:300]
        return form, done

    def test_session_and_csrf_cookies_are_secure_httponly_and_samesite_over_https(
        self, scene: Scene, settings
    ) -> None:
        # What CRM_PUBLIC_URL=https://… sets (see the environment test below).
        settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
        form, done = self._log_in(scene)
        csrf = form.cookies[django_settings.CSRF_COOKIE_NAME]
        session = done.cookies[django_settings.SESSION_COOKIE_NAME]
        for name, morsel in (("csrf", csrf), ("session", session)):
            assert morsel["secure"] is True, name
            assert morsel["httponly"] is True, name
            assert morsel["samesite"] == "Lax", name

    def test_over_plain_http_the_cookies_are_still_httponly_and_samesite(
        self, scene: Scene
    ) -> None:
        form, done = self._log_in(scene)
        for morsel in (
            form.cookies[django_settings.CSRF_COOKIE_NAME],
            done.cookies[django_settings.SESSION_COOKIE_NAME],
        ):
            assert not morsel["secure"]
            assert morsel["httponly"] is True and morsel["samesite"] == "Lax"


# ------------------------------------------------- settings read from the environment

SETTINGS_PRINTED = (
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_HTTPONLY",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
)


def settings_from_env(tmp_path: Path, **env: str) -> dict[str, Any]:
    """Import crm.settings in a clean interpreter with exactly this environment."""
    code = (
        "import json, crm.settings as s;"
        f"print(json.dumps({{k: getattr(s, k) for k in {SETTINGS_PRINTED!r}}}))"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "SESSION_", "CSRF_", "CRM_PUBLIC_URL"))
    }
    base.update({"CRM_DATA_DIR": str(tmp_path), "CRM_TESTING": "1"}, **env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=base, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise AssertionError(out.stderr)
    return json.loads(out.stdout)


class EnvironmentTests:
    def test_defaults_over_http_no_hsts_no_proxy_header(self, tmp_path: Path) -> None:
        s = settings_from_env(tmp_path)
        assert s["SESSION_COOKIE_SECURE"] is False and s["CSRF_COOKIE_SECURE"] is False
        assert s["SESSION_COOKIE_HTTPONLY"] is True and s["CSRF_COOKIE_HTTPONLY"] is True
        assert s["SECURE_HSTS_SECONDS"] == 0
        assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False and s["SECURE_HSTS_PRELOAD"] is False
        assert s["SECURE_PROXY_SSL_HEADER"] is None

    def test_an_https_public_url_makes_the_cookies_secure(self, tmp_path: Path) -> None:
        s = settings_from_env(tmp_path, CRM_PUBLIC_URL="https://crm.example.com")
        assert s["SESSION_COOKIE_SECURE"] is True and s["CSRF_COOKIE_SECURE"] is True
        off = settings_from_env(
            tmp_path, CRM_PUBLIC_URL="https://crm.example.com", SESSION_COOKIE_SECURE="false"
        )
        assert off["SESSION_COOKIE_SECURE"] is False and off["CSRF_COOKIE_SECURE"] is False

    def test_hsts_is_opt_in(self, tmp_path: Path) -> None:
        s = settings_from_env(
            tmp_path,
            SECURE_HSTS_SECONDS="63072000",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
            SECURE_HSTS_PRELOAD="yes",
        )
        assert s["SECURE_HSTS_SECONDS"] == 63_072_000
        assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True and s["SECURE_HSTS_PRELOAD"] is True

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("X-Forwarded-Proto", ["HTTP_X_FORWARDED_PROTO", "https"]),
            ("x-forwarded-ssl=on", ["HTTP_X_FORWARDED_SSL", "on"]),
            (" X-Forwarded-Proto = https ", ["HTTP_X_FORWARDED_PROTO", "https"]),
        ],
    )
    def test_the_proxy_header_is_opt_in(self, tmp_path: Path, raw: str, expected: list) -> None:
        assert (
            settings_from_env(tmp_path, SECURE_PROXY_SSL_HEADER=raw)["SECURE_PROXY_SSL_HEADER"]
            == expected
        )

    @pytest.mark.parametrize(
        ("name", "raw"),
        [
            ("SECURE_HSTS_SECONDS", "a year"),
            ("SECURE_HSTS_SECONDS", "-1"),
            ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "sure"),
            ("SECURE_PROXY_SSL_HEADER", "X Forwarded Proto"),
            ("SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO: https"),
        ],
    )
    def test_a_bad_value_stops_the_process_naming_the_variable(
        self, tmp_path: Path, name: str, raw: str
    ) -> None:
        with pytest.raises(AssertionError, match=name):
            settings_from_env(tmp_path, **{name: raw})
