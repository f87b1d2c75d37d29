"""The definitions API: the latest versions, one definition with its versions, a version, the
difference between two versions, a new version, and import/export of definition JSON."""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from .. import definitions
from ..models import Definition
from . import serializers as s
from .permissions import IsAdminOrReadOnly

VERSION = r"versions/(?P<number>[0-9]+)"


class DefinitionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        viewsets.GenericViewSet):
    permission_classes = [IsAdminOrReadOnly]
    serializer_class = s.DefinitionSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    pagination_class = None

    def get_queryset(self):
        return Definition.objects.prefetch_related("steps").select_related("created_by") \
            .annotate(saga_count=Count("sagas"))

    def list(self, request):
        return Response(definitions.export())

    def retrieve(self, request, name=None):
        versions = self._versions(name)
        body = definitions.to_json(versions[0])
        body["versions"] = [_summary(d) for d in versions]
        return Response(body)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        definition, created = definitions.save_version(serializer.validated_data, request.user)
        return Response(definitions.to_json(definition), status=status.HTTP_201_CREATED if created else 200)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def versions(self, request, name=None):
        """Every version of the definition, newest first."""
        return Response([_summary(d) for d in self._versions(name)])

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"], url_path=VERSION)
    def version(self, request, name=None, number=None):
        """One version of the definition, as it was saved (sagas started on it ran these steps)."""
        definition = self._version(name, number)
        return Response({**definitions.to_json(definition), **_summary(definition)})

    @extend_schema(parameters=[OpenApiParameter("against", int, description="the version to compare with "
                                                "(default: the one before)")], responses={200: dict})
    @action(detail=True, methods=["get"], url_path=VERSION + "/diff")
    def diff(self, request, name=None, number=None):
        """What changed from version `against` to version `number`."""
        definition = self._version(name, number)
        raw = request.query_params.get("against")
        if raw is None:
            against = int(number) - 1
            if against < 1:
                raise ValidationError({"against": [f"version {number} is the first; name a version to compare with"]})
        elif raw.isdigit():
            against = int(raw)
        else:
            raise ValidationError({"against": [f"{raw!r} is not a version number"]})
        return Response(definitions.diff(self._version(name, against), definition))

    @extend_schema(parameters=[OpenApiParameter("name", str, many=True)], responses={200: dict})
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The latest version of every definition (or of those named), ready for `import`."""
        return Response(definitions.export(request.query_params.getlist("name") or None))

    @extend_schema(request=dict, responses={200: dict})
    @action(detail=False, methods=["post"], url_path="import")
    def import_(self, request):
        """Import definition JSON (a list, or {"definitions": [...]}): all of it, or on any error nothing."""
        try:
            saved = definitions.import_definitions(request.data, request.user)
        except definitions.InvalidImport as exc:
            return Response({"detail": str(exc), "definitions": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"imported": [{"name": d.name, "version": d.version, "created": created}
                                      for d, created in saved]})

    def _versions(self, name: str) -> list[Definition]:
        versions = list(self.get_queryset().filter(name=name).order_by("-version"))
        if not versions:
            raise NotFound(f"no definition named {name!r}")
        return versions

    def _version(self, name: str, number) -> Definition:
        definition = self.get_queryset().filter(name=name, version=int(number)).first()
        if definition is None:
            self._versions(name)  # 404 for an unknown name first
            raise NotFound(f"{name} has no version {number}")
        return definition


def _summary(definition: Definition) -> dict:
    return {"version": definition.version, "created_at": definition.created_at,
            "created_by": definition.created_by.get_username() if definition.created_by else None,
            "sagas": definition.saga_count}
