"""Seeded roles (Django groups) and the permissions each one grants.

Mirrors the original's Owner / Admin / Manager / Employee grants. Data migrations
of each app call ``grant_role_permissions`` for their own permissions, so roles
stay correct whichever apps are installed and in whatever order they migrate.
"""

from __future__ import annotations

from typing import Any

OWNER, ADMIN, MANAGER, EMPLOYEE = "Owner", "Admin", "Manager", "Employee"
ROLES = (OWNER, ADMIN, MANAGER, EMPLOYEE)

_CORE_MODELS = ("person", "organisation", "lead", "note", "email", "phone")
_ALL_CORE = [
    f"{a}_{m}" for m in (*_CORE_MODELS, "team") for a in ("view", "add", "change", "delete")
]
_EMPLOYEE_CORE = [f"{a}_{m}" for m in _CORE_MODELS for a in ("view", "add", "change")]
_USERS = ["view_user", "add_user", "change_user", "delete_user"]
_GROUPS = ["view_group", "add_group", "change_group", "delete_group"]
CHAT_PERMISSIONS = ["view_chat", "view_all_chats", "reply_chat", "delete_chat", "manage_widgets"]

# app_label -> role -> codenames
ROLE_PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "crm_core": {
        OWNER: _ALL_CORE,
        ADMIN: _ALL_CORE,
        MANAGER: [c for c in _ALL_CORE if not c.endswith("_team")] + ["view_team"],
        EMPLOYEE: [*_EMPLOYEE_CORE, "view_team"],
    },
    "auth": {OWNER: _USERS + _GROUPS, ADMIN: [*_USERS, "view_group"], MANAGER: ["view_user"]},
    "crm_chat": {
        OWNER: CHAT_PERMISSIONS,
        ADMIN: CHAT_PERMISSIONS,
        MANAGER: CHAT_PERMISSIONS,
        EMPLOYEE: ["view_chat", "reply_chat"],
    },
}


def grant_role_permissions(apps: Any, app_label: str) -> None:
    """Create the four roles if missing and grant them ``app_label``'s permissions.

    Permissions are normally created by a ``post_migrate`` signal, i.e. after every
    migration has run; creating them here first lets a data migration use them on
    a fresh database.
    """
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config(app_label)
    if not getattr(app_config, "models_module", None):  # migration-state stubs have none
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        codenames = ROLE_PERMISSIONS.get(app_label, {}).get(role, [])
        perms = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        group.permissions.add(*perms)


def seed_roles_after_migrate(sender: Any, apps: Any = None, **kwargs: Any) -> None:
    """``post_migrate`` receiver: re-seed roles after ``migrate`` or ``flush``.

    The data migrations seed a fresh database; this keeps the roles present after
    a ``flush`` (which empties tables but re-sends ``post_migrate``) and repairs
    grants an operator deleted by hand.
    """
    if sender.label not in ROLE_PERMISSIONS:
        return
    if apps is None:  # ``flush`` sends the signal without the migration state
        from django.apps import apps as global_apps

        apps = global_apps
    try:
        apps.get_model("auth", "Group")
    except LookupError:
        return
    grant_role_permissions(apps, sender.label)
