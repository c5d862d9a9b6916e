"""The people pages in a real browser against the real ASGI server."""

from __future__ import annotations

import pytest

from crm.core.models import Person
from crm.core.roles import OWNER
from crm.core.services import create_agent

PASSWORD = "browser-test-pass-1"


@pytest.mark.browser
def test_it_creates_a_person_through_the_ui(asgi_server, page) -> None:  # type: ignore[no-untyped-def]
    create_agent(username="olivia", password=PASSWORD, role=OWNER, validate=False)

    page.goto(asgi_server.url + "/login/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/crm/")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="People").click()
    page.wait_for_url("**/crm/people/")
    page.get_by_role("link", name="New person").click()

    page.get_by_label("First name").fill("Grace")
    page.get_by_label("Last name").fill("Hopper")
    page.get_by_label("Email address 1", exact=True).fill("grace@example.com")
    page.get_by_label("Phone number 1", exact=True).fill("+1 202 555 0142")
    page.get_by_role("button", name="Save person").click()

    page.wait_for_url("**/crm/people/*-*/")
    assert page.get_by_role("heading", level=1).inner_text() == "Grace Hopper"
    page.get_by_role("navigation", name="Main").get_by_role("link", name="People").click()
    page.wait_for_url("**/crm/people/")
    row = page.get_by_role("row", name="Grace Hopper")
    assert "grace@example.com" in row.inner_text()
    assert Person.objects.get().emails.get().address == "grace@example.com"
