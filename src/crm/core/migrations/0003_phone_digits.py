"""Phone numbers' digits, for search: the column, then the existing rows in batches."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

BATCH = 1000


def fill_digits(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # The model's save() is not available here: the rule is repeated on purpose,
    # frozen as it was when this migration was written.
    Phone = apps.get_model("crm_core", "Phone")
    last = 0
    while True:
        rows = list(Phone.objects.filter(pk__gt=last).order_by("pk")[:BATCH])
        if not rows:
            return
        for row in rows:
            row.digits = "".join(c for c in row.number if "0" <= c <= "9")
        Phone.objects.bulk_update(rows, ["digits"])
        last = rows[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("crm_core", "0002_roles"),
    ]

    operations = [
        migrations.AddField(
            model_name="phone",
            name="digits",
            field=models.CharField(db_index=True, default="", editable=False, max_length=40),
        ),
        migrations.RunPython(fill_digits, migrations.RunPython.noop, elidable=True),
    ]
