"""Browsers ask every origin for /favicon.ico; the CRM answers with its icon, not a 404."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_favicon_ico_answers_an_image_to_anyone() -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.lstrip().startswith(b"<svg")
    assert "max-age" in response["Cache-Control"]
    # Never rendered as a document: the locked-down policy of non-HTML responses.
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_every_page_names_its_icon(admin_client: Client) -> None:
    for path in ["/login/", "/crm/"]:
        client = Client() if path == "/login/" else admin_client
        html = client.get(path).content.decode()
        link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
        assert link, f"{path} has no icon link"
        icon = Client().get(link[1])
        assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"


def test_the_page_policy_allows_its_own_icon(admin_client: Client) -> None:
    policy = admin_client.get("/crm/")["Content-Security-Policy"]
    img_src = next(d for d in policy.split(";") if d.strip().startswith("img-src"))
    assert "'self'" in img_src.split()
