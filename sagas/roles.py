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
