"""Grant the chat permissions to the seeded roles (Owner/Admin/Manager: all; Employee: view, reply)."""

from django.db import migrations


def grant_chat_permissions(apps, schema_editor):
    from crm.core.roles import grant_role_permissions

    grant_role_permissions(apps, "crm_chat")


class Migration(migrations.Migration):
    dependencies = [("crm_chat", "0001_initial"), ("crm_core", "0002_roles")]

    operations = [migrations.RunPython(grant_chat_permissions, migrations.RunPython.noop)]
