"""Compiled single-row reads answer exactly what the ORM answers, on either database."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from crm.chat.models import ChatConversation, ChatWidget
from crm.core.compiled import CompiledRow, CompiledValues
from tests.chat.conftest import ChatWorld

pytestmark = pytest.mark.django_db

by_key: CompiledRow[ChatWidget] = CompiledRow(
    lambda key: ChatWidget.objects.filter(public_key=key, deleted_at__isnull=True)[:1], key=str
)
by_ids: CompiledRow[ChatConversation] = CompiledRow(
    lambda visitor, external_id: ChatConversation.objects.filter(
        visitor_id=visitor, external_id=external_id
    )[:1],
    visitor=int,
    external_id=uuid.UUID,
)
state = CompiledValues(
    lambda pk: ChatConversation.objects.filter(pk=pk).values("status", "external_id")[:1], pk=int
)


def _fields(obj: object, model: type) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}


def test_a_model_row_equals_the_orms(world: ChatWorld) -> None:
    widget = by_key.get(key=world.widget.public_key)
    assert isinstance(widget, ChatWidget)
    assert _fields(widget, ChatWidget) == _fields(
        ChatWidget.objects.get(pk=world.widget.pk), ChatWidget
    )
    assert not widget._state.adding  # a saved row: save() updates it
    conv = world.conversation()
    found = by_ids.get(visitor=world.visitor.pk, external_id=conv.external_id)
    assert found is not None and found.pk == conv.pk
    # Converters ran: a UUID is a UUID and a timestamp is aware on SQLite too.
    assert isinstance(found.external_id, uuid.UUID)
    assert found.created_at == ChatConversation.objects.get(pk=conv.pk).created_at
    assert found.created_at.tzinfo is not None


def test_values_change_between_calls_and_missing_rows_are_none(world: ChatWorld) -> None:
    first, second = world.conversation(), world.conversation(world.other_visitor)
    assert by_ids.get(visitor=world.visitor.pk, external_id=first.external_id).pk == first.pk
    assert (
        by_ids.get(visitor=world.other_visitor.pk, external_id=second.external_id).pk == second.pk
    )
    # Another visitor's id finds nothing: both values are in the statement.
    assert by_ids.get(visitor=world.visitor.pk, external_id=second.external_id) is None
    assert by_key.get(key="no-such-key") is None
    assert state.get(pk=second.pk) == {"status": "open", "external_id": second.external_id}
    assert state.get(pk=second.pk + 1000) is None


def test_it_runs_one_statement_through_djangos_cursor(world: ChatWorld) -> None:
    by_key.get(key=world.widget.public_key)  # compiled
    with CaptureQueriesContext(connection) as queries:
        by_key.get(key=world.widget.public_key)
    assert len(queries) == 1
    assert world.widget.public_key in queries[0]["sql"]


def test_a_placeholder_used_twice_is_refused_when_compiled(world: ChatWorld) -> None:
    twice: CompiledRow[ChatWidget] = CompiledRow(
        lambda key: ChatWidget.objects.filter(Q(public_key=key) | Q(name=key))[:1], key=str
    )
    with pytest.raises(ValueError, match="appears 2 times"):
        twice.get(key="x")


def test_unsupported_placeholder_types_are_refused() -> None:
    with pytest.raises(TypeError):
        CompiledRow(lambda when: ChatWidget.objects.filter(created_at=when)[:1], when=float)
