"""The definitions API: list the latest versions, read one with its versions, create a new version."""

from __future__ import annotations

from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from .. import definitions
from ..models import Definition
from . import serializers as s
from .permissions import IsAdminOrReadOnly


class DefinitionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        viewsets.GenericViewSet):
    permission_classes = [IsAdminOrReadOnly]
    serializer_class = s.DefinitionSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    pagination_class = None

    def get_queryset(self):
        return Definition.objects.prefetch_related("steps")

    def list(self, request):
        newest = {}
        for definition in self.get_queryset().order_by("name", "-version"):
            newest.setdefault(definition.name, definition)
        return Response([definitions.to_json(d) for d in newest.values()])

    def retrieve(self, request, name=None):
        versions = list(self.get_queryset().filter(name=name).order_by("-version"))
        if not versions:
            raise NotFound(f"no definition named {name!r}")
        body = definitions.to_json(versions[0])
        body["versions"] = [{"version": d.version, "created_at": d.created_at} for d in versions]
        return Response(body)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        definition, created = definitions.save_version(serializer.validated_data, request.user)
        return Response(definitions.to_json(definition), status=status.HTTP_201_CREATED if created else 200)
