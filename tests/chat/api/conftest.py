"""Fixtures for the public widget HTTP surface, driven through Django's test Client.

The client enforces CSRF checks on purpose: the widget API is meant to work
cross-origin without cookies or CSRF tokens, so a test passing here proves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client

from crm.chat.models import ChatConversation, ChatVisitor, ChatWidget
from crm.chat.services import chat_service
from crm.conf import DEFAULTS
from tests.chat.conftest import ChatWorld

TOKEN_HEADER = "X-Chat-Visitor-Token"
SHOP = "https://shop.example"  # the one origin ChatWorld's main widget allows
EVIL = "https://evil.example"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Rate-limit counters and presence marks live in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


@dataclass
class PublicApi:
    """Calls ``/p/chat/<key>/api/…`` as the widget does: JSON in, token in a header."""

    client: Client
    key: str

    def url(self, path: str) -> str:
        return f"/p/chat/{self.key}/api{path}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        origin: str | None = None,
        raw: str | bytes | None = None,
        **extra: Any,
    ) -> HttpResponse:
        headers: dict[str, str] = {}
        if token is not None:
            headers[TOKEN_HEADER] = token
        if origin is not None:
            headers["Origin"] = origin
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        kwargs: dict[str, Any] = {"headers": headers, **extra}
        if method.lower() == "get":
            return self.client.get(self.url(path), **kwargs)
        return self.client.generic(
            method.upper(),
            self.url(path),
            data=data or b"",
            content_type="application/json",
            **kwargs,
        )

    def identify(self, body: Any = None, **kw: Any) -> HttpResponse:
        return self.call("post", "/visitor", {} if body is None else body, **kw)

    def messages_path(self, conversation: ChatConversation) -> str:
        return f"/conversations/{conversation.external_id}/messages"


def assert_error(response: HttpResponse, status: int, code: str | None = None) -> dict:
    """The one error shape: ``{"error": {"code": str, "message": str}}`` with ``status``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    data = response.json()
    assert set(data) == {"error"}, data
    error = data["error"]
    assert set(error) <= {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def new_visitor(widget: ChatWidget) -> tuple[ChatVisitor, str]:
    visitor, token = chat_service.identify_visitor(widget=widget, token=None)
    assert token is not None
    return visitor, token


def rate_limits(**lowered: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """The default limits with some entries lowered, for ``settings.CRM_CHAT_RATE_LIMITS``."""
    limits = dict(DEFAULTS["CRM_CHAT_RATE_LIMITS"])
    assert set(lowered) <= set(limits), lowered
    limits.update(lowered)
    return limits


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def public(world: ChatWorld, client: Client) -> PublicApi:
    """The API of the main widget (allowed origin: https://shop.example)."""
    return PublicApi(client, world.widget.public_key)


@pytest.fixture
def other_public(world: ChatWorld, client: Client) -> PublicApi:
    """The API of the second widget, which allows any origin."""
    return PublicApi(client, world.other_widget.public_key)
