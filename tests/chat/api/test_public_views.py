"""The loader script and the iframe page (crm.chat.views.public)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from crm.chat.services import chat_service
from tests.chat.api.conftest import PublicApi
from tests.chat.conftest import ChatWorld

CRM = "https://crm.example"


@pytest.fixture(autouse=True)
def _public_url(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CRM_PUBLIC_URL = CRM


def _csp(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    directives: dict[str, list[str]] = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class _Tags(HTMLParser):
    """Collects every tag with its attributes, and the text inside <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


class LoaderTests:
    def test_it_serves_javascript_with_the_crm_origin_and_key(self, world: ChatWorld):
        response = Client().get(f"/p/chat/{world.widget.public_key}.js")
        assert response.status_code == 200
        assert response["Content-Type"].split(";")[0] == "text/javascript"
        body = response.content.decode()
        assert json.dumps(CRM) in body
        assert json.dumps(world.widget.public_key) in body
        assert json.dumps(world.widget.allowed_origins) in body
        assert "__CONFIG__" not in body
        assert response["X-Content-Type-Options"] == "nosniff"

    def test_it_is_cacheable_but_revalidated_by_etag(self, world: ChatWorld):
        url = f"/p/chat/{world.widget.public_key}.js"
        response = Client().get(url)
        etag = response["ETag"]
        assert re.fullmatch(r'"[0-9a-f]{16,}"', etag), etag
        cache_control = {d.strip() for d in response["Cache-Control"].split(",")}
        assert "must-revalidate" in cache_control
        assert any(d.startswith("max-age=") for d in cache_control)
        not_modified = Client().get(url, headers={"If-None-Match": etag})
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        assert not_modified["ETag"] == etag
        stale = Client().get(url, headers={"If-None-Match": '"0000"'})
        assert stale.status_code == 200 and stale.content == response.content

    @pytest.mark.parametrize(
        "header", ["W/{etag}", '"other", {etag}', '"other", W/{etag}', "*"], ids=str
    )
    def test_it_answers_304_to_weak_and_listed_etags(self, world: ChatWorld, header: str):
        """Compressing proxies hand browsers a weakened ETag; it must still revalidate."""
        url = f"/p/chat/{world.widget.public_key}.js"
        etag = Client().get(url)["ETag"]
        response = Client().get(url, headers={"If-None-Match": header.format(etag=etag)})
        assert response.status_code == 304

    def test_it_changes_the_etag_when_the_widget_changes(self, world: ChatWorld):
        url = f"/p/chat/{world.widget.public_key}.js"
        before = Client().get(url)["ETag"]
        chat_service.update_widget(widget=world.widget, position="bottom-left")
        after = Client().get(url, headers={"If-None-Match": before})
        assert after.status_code == 200 and after["ETag"] != before
        assert b'"bottom-left"' in after.content

    def test_it_is_usable_from_any_site_and_sets_no_cookie(self, world: ChatWorld):
        response = Client().get(
            f"/p/chat/{world.widget.public_key}.js", headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 200
        assert not response.cookies

    @pytest.mark.parametrize("key", ["0" * 64, "nope", "a-b_c"])
    def test_it_answers_an_unknown_key_with_a_harmless_js_comment(self, world: ChatWorld, key: str):
        response = Client().get(f"/p/chat/{key}.js")
        assert response.status_code == 404
        assert response["Content-Type"].split(";")[0] == "text/javascript"
        body = response.content.decode().strip()
        # Only a comment: a stale snippet on a host page must run as a no-op.
        assert body.startswith("/*") and body.endswith("*/") and body.count("*/") == 1

    def test_it_answers_an_inactive_widget_like_an_unknown_one(self, world: ChatWorld):
        chat_service.update_widget(widget=world.widget, is_active=False)
        response = Client().get(f"/p/chat/{world.widget.public_key}.js")
        assert response.status_code == 404
        assert response.content.decode().strip().startswith("/*")
        assert world.widget.public_key.encode() not in response.content


class WidgetPageTests:
    def test_it_serves_the_page_with_frame_ancestors_from_allowed_origins(self, world: ChatWorld):
        response = Client().get(f"/p/chat/{world.widget.public_key}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        csp = _csp(response)
        assert "https://shop.example" in csp["frame-ancestors"]
        assert "*" not in csp["frame-ancestors"]
        assert world.widget.name.encode() in response.content

    def test_it_lets_any_site_frame_a_widget_without_allowed_origins(self, world: ChatWorld):
        response = Client().get(f"/p/chat/{world.other_widget.public_key}")
        assert response.status_code == 200
        assert "*" in _csp(response)["frame-ancestors"]

    def test_it_only_runs_scripts_from_its_own_origin(self, world: ChatWorld):
        csp = _csp(Client().get(f"/p/chat/{world.widget.public_key}"))
        assert csp["script-src"] == ["'self'"]
        assert csp["default-src"] == ["'none'"]
        assert csp["base-uri"] == ["'none'"]
        for values in csp.values():
            assert "'unsafe-inline'" not in values and "'unsafe-eval'" not in values

    def test_it_sends_no_x_frame_options_so_csp_governs_framing(self, world: ChatWorld):
        response = Client().get(f"/p/chat/{world.widget.public_key}")
        assert "X-Frame-Options" not in response

    def test_it_has_no_inline_scripts_or_event_handler_attributes(self, world: ChatWorld):
        html = Client().get(f"/p/chat/{world.widget.public_key}").content.decode()
        page = _parse(html)
        assert page.script_text == []
        scripts = [attrs for tag, attrs in page.tags if tag == "script"]
        assert scripts and all(attrs.get("src") for attrs in scripts)
        assert [
            (t, name) for t, attrs in page.tags for name in attrs if name.startswith("on")
        ] == []
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)

    def test_it_escapes_hostile_widget_text_into_inert_markup(self, world: ChatWorld):
        chat_service.update_widget(
            widget=world.widget,
            name='Shop <script>alert(1)</script>" onload="alert(2)',
            welcome_message="<img src=x onerror=alert(3)>",
        )
        page = _parse(Client().get(f"/p/chat/{world.widget.public_key}").content.decode())
        assert page.script_text == []
        assert [t for t, _ in page.tags].count("script") == 2  # stream.js, widget.js
        assert [t for t, _ in page.tags if t == "img"] == []
        assert [
            (t, name) for t, attrs in page.tags for name in attrs if name.startswith("on")
        ] == []

    def test_it_references_its_own_static_script_and_style(self, world: ChatWorld):
        page = _parse(Client().get(f"/p/chat/{world.widget.public_key}").content.decode())
        srcs = [attrs["src"] for tag, attrs in page.tags if tag == "script"]
        hrefs = [attrs["href"] for tag, attrs in page.tags if attrs.get("rel") == "stylesheet"]
        assert [s.split("?")[0].rsplit("/", 1)[-1] for s in srcs] == ["stream.js", "widget.js"]
        assert [h.split("?")[0].rsplit("/", 1)[-1] for h in hrefs] == ["widget.css"]
        for url in srcs + hrefs:
            assert url.startswith("/"), url  # same origin: allowed by 'self'
            assert Client().get(url).status_code == 200

    def test_it_sets_no_cookie_and_is_not_cached_stale(self, world: ChatWorld):
        response = Client().get(f"/p/chat/{world.widget.public_key}")
        assert not response.cookies
        assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]

    @pytest.mark.parametrize("key", ["0" * 64, "nope"])
    def test_it_answers_an_unknown_key_with_a_friendly_404_page(self, world: ChatWorld, key: str):
        response = Client().get(f"/p/chat/{key}")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")
        assert b"not available" in response.content
        assert _parse(response.content.decode()).script_text == []

    def test_it_answers_an_inactive_widget_with_the_friendly_404(self, world: ChatWorld):
        chat_service.update_widget(widget=world.widget, is_active=False)
        response = Client().get(f"/p/chat/{world.widget.public_key}")
        assert response.status_code == 404
        assert b"not available" in response.content
        assert world.widget.name.encode() not in response.content


class TokenPrivacyTests:
    def test_it_never_puts_the_visitor_token_in_a_url(self, world: ChatWorld, public: PublicApi):
        created = public.identify()
        token = created.json()["visitor_token"]
        assert "Location" not in created
        for response in (
            Client().get(f"/p/chat/{world.widget.public_key}"),
            Client().get(f"/p/chat/{world.widget.public_key}.js"),
        ):
            assert token.encode() not in response.content
            assert world.token.encode() not in response.content
        # The page's configuration names the API and socket by path only.
        page = _parse(Client().get(f"/p/chat/{world.widget.public_key}").content.decode())
        (config,) = [a["data-config"] for t, a in page.tags if t == "script" and "data-config" in a]
        urls = json.loads(config or "{}")
        assert urls["api"] == f"/p/chat/{world.widget.public_key}/api"
        assert "?" not in urls["api"] and "?" not in urls["ws"]
        # A token offered in the query string is ignored: only the header authenticates.
        response = public.call(
            "get", f"/conversations/{world.conversation().external_id}/messages?token={token}"
        )
        assert response.status_code == 401
