"""Seed the Owner / Admin / Manager / Employee roles with their core permissions."""

from django.db import migrations


def seed_roles(apps, schema_editor):
    from crm.core.roles import grant_role_permissions

    grant_role_permissions(apps, "crm_core")
    grant_role_permissions(apps, "auth")


class Migration(migrations.Migration):
    dependencies = [
        ("crm_core", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed_roles, migrations.RunPython.noop)]
