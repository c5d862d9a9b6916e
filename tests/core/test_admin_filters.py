"""Admin filters and choices no row can match are refused, never a 500.

A changelist filters by any field its query string names. A number beyond 64 bits
on a relation used to fail on SQLite (OverflowError), a NUL on PostgreSQL; now the
admin answers them like any invalid filter, with a redirect to ``?e=1``; a
many-to-many choice with such an id is a form error. That holds for the admins of
other apps too (Django's auth, django-tasks).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client

from crm.core.admin import _unstorable

HUGE = "99999999999999999999999"


@pytest.fixture
def staff(owner: AbstractUser) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    return client


@pytest.mark.parametrize(
    ("changelist", "query"),
    [
        ("crm_chat/chatconversation", f"widget={HUGE}"),
        ("crm_chat/chatvisitor", f"widget={HUGE}"),
        ("crm_chat/chatconversation", "status=%00"),
        ("crm_core/organisation", f"team={HUGE}"),
        ("crm_core/organisation", f"team__id__exact=-{HUGE}"),
        ("crm_core/lead", "status=%00"),
        ("crm_core/lead", f"person__in=1,{HUGE}"),
        ("auth/user", f"groups={HUGE}"),
        ("django_tasks_database/dbtaskresult", "status=%00"),
    ],
)
def test_a_filter_no_row_can_hold_is_an_invalid_filter(
    staff: Client, changelist: str, query: str
) -> None:
    url = f"/admin/{changelist}/"
    response = staff.get(f"{url}?{query}")
    assert response.status_code == 302
    assert response["Location"] == f"{url}?e=1"


@pytest.mark.parametrize(
    ("changelist", "query"),
    [
        ("crm_core/lead", "status=new"),
        ("crm_core/organisation", "team=1"),
        ("crm_chat/chatconversation", f"widget={2**63 - 1}"),
        ("crm_core/person", "q=99999999999999999999999"),  # search text is not a filter
    ],
)
def test_filters_a_row_can_hold_still_work(staff: Client, changelist: str, query: str) -> None:
    assert staff.get(f"/admin/{changelist}/?{query}").status_code == 200


@pytest.mark.parametrize(
    ("value", "unstorable"),
    [
        ("7", False),
        (str(2**63 - 1), False),
        (str(-(2**63)), False),
        (str(2**63), True),
        (str(-(2**63) - 1), True),
        (f"1,2,{HUGE}", True),
        ("a\x00b", True),
        ("9" * 5000, False),  # not a number Python reads: the field's own check refuses it
        ("open", False),
    ],
)
def test_unstorable_values(value: str, unstorable: bool) -> None:
    assert _unstorable(value) is unstorable


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/crm_core/team/add/", {"name": "Support", "members": HUGE}),
        ("/admin/auth/group/add/", {"name": "Helpers", "permissions": f"-{HUGE}"}),
    ],
)
def test_a_many_to_many_choice_no_row_can_have_is_a_form_error(
    staff: Client, path: str, data: dict[str, str]
) -> None:
    """The choices are checked with ``pk__in``, which SQLite failed for such a number."""
    response = staff.post(path, data)
    assert response.status_code == 200  # the form again, with its error
    assert "is not a valid value" in response.content.decode()


def test_a_user_keeps_the_guard_on_its_groups(staff: Client, owner: AbstractUser) -> None:
    response = staff.post(
        f"/admin/auth/user/{owner.pk}/change/", {"username": owner.username, "groups": HUGE}
    )
    assert response.status_code == 200
    assert "is not a valid value" in response.content.decode()
