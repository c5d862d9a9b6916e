"""Migration 0003 fills the digits of the phone numbers stored before it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("crm_core", "0002_roles")]
AFTER = [("crm_core", "0003_phone_digits")]


@pytest.mark.django_db(transaction=True)
def test_existing_numbers_get_their_digits() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        Person, Phone = old.get_model("crm_core", "Person"), old.get_model("crm_core", "Phone")
        person = Person.objects.create(first_name="Ada", last_name="Lovelace")
        for number in ["+44 20 7946 0001", "(202) 555-0142", "ext. 12"]:
            Phone.objects.create(person_id=person.pk, number=number)

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)

        new = executor.loader.project_state(AFTER).apps.get_model("crm_core", "Phone")
        digits = list(new.objects.order_by("pk").values_list("digits", flat=True))
        assert digits == ["442079460001", "2025550142", "12"]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
