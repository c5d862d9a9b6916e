"""A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413, not an HTML 400 with a traceback.

Django raises ``RequestDataTooBig`` when such a body is first read and logs it at
ERROR; nothing is wrong on the server, so the answer is a plain refusal instead.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.conf import settings as django_settings
from django.test import Client

from crm.chat.models import ChatMessage, ChatVisitor
from tests.chat.api.conftest import SHOP, PublicApi, assert_error
from tests.chat.conftest import ChatWorld

SMALL_LIMIT = 10_000


def _oversized(limit: int) -> str:
    return json.dumps({"body": "x" * (limit + 1)})


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


class PublicApiTests:
    def test_the_default_limit_answers_413_in_the_json_shape_without_an_error_log(
        self, world: ChatWorld, public: PublicApi, caplog: pytest.LogCaptureFixture
    ):
        conv = world.conversation()
        raw = _oversized(django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        with caplog.at_level(logging.INFO):
            response = public.call(
                "post", public.messages_path(conv), raw=raw, token=world.token, origin=SHOP
            )
        error = assert_error(response, 413, "too_large")
        assert "bytes" in error["message"]
        # The widget runs cross-origin: it must be able to read the refusal.
        assert response["Access-Control-Allow-Origin"] == SHOP
        _no_error_logged(caplog)
        assert not ChatMessage.objects.exists()

    @pytest.mark.parametrize(
        ("method", "path"),
        [("post", "/visitor"), ("patch", "/visitor"), ("post", "/conversations"),
         ("post", "/page-views")],
    )  # fmt: skip
    def test_every_operation_answers_413(
        self,
        world: ChatWorld,
        public: PublicApi,
        settings,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture,
        method: str,
        path: str,
    ):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
        with caplog.at_level(logging.INFO):
            response = public.call(method, path, raw=_oversized(SMALL_LIMIT), token=world.token)
        assert_error(response, 413, "too_large")
        _no_error_logged(caplog)
        assert ChatVisitor.objects.count() == 2

    @pytest.mark.parametrize(
        "content_type",
        ["multipart/form-data; boundary=x", "text/plain", "application/x-www-form-urlencoded"],
    )
    def test_any_declared_type_answers_413(
        self,
        world: ChatWorld,
        public: PublicApi,
        settings,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture,
        content_type: str,
    ):
        """The API reads every body whole: a form's type must not slip past the cap."""
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
        field = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n'
        body = field + b"y" * SMALL_LIMIT + b"\r\n--x--\r\n"
        with caplog.at_level(logging.INFO):
            response = public.client.generic("POST", public.url("/visitor"), body, content_type)
        assert_error(response, 413, "too_large")
        _no_error_logged(caplog)
        assert ChatVisitor.objects.count() == 2

    def test_a_body_at_the_limit_is_still_served(
        self,
        world: ChatWorld,
        public: PublicApi,
        settings,  # type: ignore[no-untyped-def]
    ):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
        body = json.dumps({"name": "Ann"}).ljust(SMALL_LIMIT)
        response = public.call("patch", "/visitor", raw=body, token=world.token)
        assert response.status_code == 200, response.content

    def test_an_unknown_widget_stays_a_404(
        self,
        world: ChatWorld,
        client: Client,
        settings,  # type: ignore[no-untyped-def]
    ):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
        response = PublicApi(client, "0" * 64).call("post", "/visitor", raw=_oversized(SMALL_LIMIT))
        assert_error(response, 404, "unknown_widget")


class OtherPathTests:
    def test_the_inbox_json_endpoint_answers_413_in_the_json_shape(
        self,
        world: ChatWorld,
        settings,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture,
    ):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
        conv = world.conversation()
        agent = Client()
        agent.force_login(world.owner)
        with caplog.at_level(logging.INFO):
            response = agent.post(
                f"/crm/chat/{conv.external_id}/send/",
                _oversized(SMALL_LIMIT),
                content_type="application/json",
            )
        assert_error(response, 413, "too_large")
        _no_error_logged(caplog)
        assert not ChatMessage.objects.exists()

    def test_a_crm_form_answers_a_plain_413(
        self,
        world: ChatWorld,
        settings,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture,
    ):
        """Before any view, and before the CSRF check reads the form for its token."""
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
        agent = Client(enforce_csrf_checks=True)
        agent.force_login(world.owner)
        assert agent.get("/crm/people/new/").status_code == 200  # sets the CSRF cookie
        token = agent.cookies[django_settings.CSRF_COOKIE_NAME].value
        with caplog.at_level(logging.INFO):
            response = agent.post(
                "/crm/people/new/",
                f"csrfmiddlewaretoken={token}&first_name=" + "x" * SMALL_LIMIT,
                content_type="application/x-www-form-urlencoded",
            )
        assert response.status_code == 413
        assert response["Content-Type"].startswith("text/plain")
        _no_error_logged(caplog)
