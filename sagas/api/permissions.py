"""API permissions by role: viewers read, operators act on sagas, admins write definitions."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .. import roles


class IsViewer(BasePermission):
    message = "you need the viewer, operator or admin role to see this"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(roles.VIEW))


class IsOperatorOrReadOnly(IsViewer):
    """Reads for viewers; writes (start, act, acknowledge) for operators."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        if request.method in SAFE_METHODS:
            return True
        self.message = "you need the operator role to act on sagas"
        return request.user.has_perm(roles.OPERATE)


class IsAdminOrReadOnly(IsViewer):
    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        if request.method in SAFE_METHODS:
            return True
        self.message = "you need the admin role to write definitions"
        return request.user.has_perm(roles.EDIT_DEFINITIONS)
