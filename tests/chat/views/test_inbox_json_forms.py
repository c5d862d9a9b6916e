"""The inbox's JSON endpoints answer a form post with 400, not a 500.

With CSRF enforced (as for every browser), the CSRF check reads a multipart form
into ``request.POST`` before the view runs; Django then refuses to give the view
the raw body, which used to surface as a 500.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client

from crm.chat.models import ChatConversation
from tests.chat.api.conftest import assert_error
from tests.chat.conftest import ChatWorld
from tests.chat.views.inbox_support import INDEX, bodies, new_chat, read_url, send_url


@pytest.fixture
def browser_like(world: ChatWorld) -> tuple[Client, str]:
    """An agent's client that enforces CSRF, with its token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    assert client.get(INDEX).status_code == 200  # sets the CSRF cookie
    return client, client.cookies[settings.CSRF_COOKIE_NAME].value


@pytest.mark.parametrize("url_of", [send_url, read_url])
def test_a_multipart_form_is_a_bad_request(
    world: ChatWorld, browser_like: tuple[Client, str], url_of: Callable[[ChatConversation], str]
) -> None:
    client, token = browser_like
    conv = new_chat(world.widget, says="hi")
    response = client.post(url_of(conv), {"csrfmiddlewaretoken": token, "body": "x"})
    assert_error(response, 400, "bad_request")
    assert bodies(conv) == ["hi"]


def test_json_with_the_csrf_header_still_sends(
    world: ChatWorld, browser_like: tuple[Client, str]
) -> None:
    client, token = browser_like
    conv = new_chat(world.widget, says="hi")
    response = client.post(
        send_url(conv), {"body": "hello"}, content_type="application/json",
        headers={"X-CSRFToken": token},
    )  # fmt: skip
    assert response.status_code == 201, response.content
    assert bodies(conv, sender_type="user") == ["hello"]
