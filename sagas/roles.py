"""The three roles and the Django permissions each one holds (groups made by a data migration).

viewer reads; operator also starts sagas, acts on them and acknowledges alerts; admin also
writes definitions. A superuser is an admin.
"""

VIEW = "sagas.view_saga"
OPERATE = "sagas.operate_saga"
EDIT_DEFINITIONS = "sagas.add_definition"

READ_CODENAMES = ["view_definition", "view_definitionstep", "view_saga", "view_sagastep", "view_stepattempt",
                  "view_sagaevent", "view_alert", "view_auditentry", "view_effect"]
ROLE_PERMISSIONS = {
    "viewer": READ_CODENAMES,
    "operator": READ_CODENAMES + ["operate_saga"],
    "admin": READ_CODENAMES + ["operate_saga", "add_definition", "change_definition", "delete_definition",
                               "add_definitionstep", "change_definitionstep", "delete_definitionstep"],
}
ROLES = tuple(ROLE_PERMISSIONS)


def ensure_groups(Group, Permission) -> None:  # noqa: N803 (model classes, also historical ones)
    """Create the role groups with their permissions (idempotent)."""
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="sagas", codename__in=codenames))
