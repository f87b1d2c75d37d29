"""The REST API: definitions, sagas (start, read, act), events, alerts, audit, demo effects."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from .. import services
from ..filters import filter_sagas
from ..machine import OperatorAction, SagaStatus
from ..models import Alert, AuditEntry, Definition, Effect, Saga, SagaEvent, SagaStep, StepAttempt
from . import serializers as s
from .pagination import Pages
from .permissions import IsOperatorOrReadOnly, IsViewer


def parse_uuid(value: str, what: str = "saga") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} with id {value!r}: ids are UUIDs") from None


SAGA_FILTERS = [
    OpenApiParameter("status", str, enum=[x.value for x in SagaStatus]),
    OpenApiParameter("definition", str),
    OpenApiParameter("correlation_id", str),
    OpenApiParameter("search", str, description="part of a saga id or correlation id"),
    OpenApiParameter("ordering", str, enum=["created_at", "-created_at", "updated_at", "-updated_at",
                                             "status", "-status"]),
]
ORDERINGS = {"created_at", "-created_at", "updated_at", "-updated_at", "status", "-status", "finished_at",
             "-finished_at"}


class SagaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsOperatorOrReadOnly]
    pagination_class = Pages

    def get_serializer_class(self):
        if self.action == "list":
            return s.SagaSummarySerializer
        if self.action == "create":
            return s.StartSagaSerializer
        if self.action == "act":
            return s.ActionSerializer
        return s.SagaSerializer

    def get_queryset(self):
        sagas = Saga.objects.all()
        if self.action != "list":
            return sagas.prefetch_related(Prefetch(
                "steps", SagaStep.objects.order_by("index").prefetch_related(
                    Prefetch("attempts", StepAttempt.objects.order_by("started_at", "id")))))
        params = self.request.query_params
        sagas, problems = filter_sagas(sagas, params)
        if problems:
            raise ValidationError(problems)
        ordering = params.get("ordering") or "-created_at"
        if ordering not in ORDERINGS:
            raise ValidationError({"ordering": [f"cannot order by {ordering!r}; use one of {sorted(ORDERINGS)}"]})
        return sagas.order_by(ordering, "-pk" if ordering.startswith("-") else "pk")

    def get_object(self):
        saga_id = parse_uuid(self.kwargs["pk"])
        saga = self.get_queryset().filter(pk=saga_id).first()
        if saga is None:
            raise NotFound(f"no saga with id {saga_id}")
        self.check_object_permissions(self.request, saga)
        return saga

    @extend_schema(parameters=SAGA_FILTERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.StartSagaSerializer, responses={201: s.SagaSerializer, 200: s.SagaSerializer})
    def create(self, request):
        serializer = s.StartSagaSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        found = Definition.objects.filter(name=data["definition"])
        if "version" in data:
            found = found.filter(version=data["version"])
        definition = found.order_by("-version").first()
        if definition is None:
            wanted = data["definition"] + (f" version {data['version']}" if "version" in data else "")
            raise ValidationError({"definition": [f"no definition named {wanted}"]})
        saga, created = services.start_saga(definition, data.get("context") or {},
                                            data.get("correlation_id") or str(uuid.uuid4()))
        saga = self.get_queryset().get(pk=saga.pk)
        return Response(s.SagaSerializer(saga).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses=s.EventSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=Pages)
    def events(self, request, pk=None):
        saga_id = parse_uuid(pk)
        if not Saga.objects.filter(pk=saga_id).exists():
            raise NotFound(f"no saga with id {saga_id}")
        page = self.paginate_queryset(SagaEvent.objects.filter(saga_id=saga_id).order_by("seq"))
        return self.get_paginated_response(s.EventSerializer(page, many=True).data)

    @extend_schema(request=s.ActionSerializer, responses=s.SagaSerializer)
    @action(detail=True, methods=["post"], url_path=r"actions/(?P<operator_action>[^/.]+)")
    def act(self, request, pk=None, operator_action=None):
        saga_id = parse_uuid(pk)
        valid = [a.value for a in OperatorAction]
        if operator_action not in valid:
            raise NotFound(f"unknown action {operator_action!r}; use one of {valid}")
        serializer = s.ActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.act(saga_id, operator_action, request.user, serializer.validated_data["reason"])
        except Saga.DoesNotExist:
            raise NotFound(f"no saga with id {saga_id}") from None
        return Response(s.SagaSerializer(self.get_queryset().get(pk=saga_id)).data)


class AlertViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsOperatorOrReadOnly]
    serializer_class = s.AlertSerializer
    pagination_class = Pages

    def get_queryset(self):
        alerts = Alert.objects.select_related("saga", "acknowledged_by").order_by("-created_at", "-id")
        value = self.request.query_params.get("open")
        if value is not None:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValidationError({"open": ["use open=true or open=false"]})
            alerts = alerts.filter(open=value.lower() in ("true", "1"))
        return alerts

    @extend_schema(parameters=[OpenApiParameter("open", bool)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=s.AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        if not str(pk).isdigit():
            raise NotFound(f"no alert with id {pk!r}")
        updated = Alert.objects.filter(pk=pk, acknowledged_at__isnull=True).update(
            acknowledged_by=request.user, acknowledged_at=timezone.now())
        alert = self.get_queryset().filter(pk=pk).first() if updated else Alert.objects.filter(pk=pk).first()
        if alert is None:
            raise NotFound(f"no alert with id {pk}")
        return Response(s.AlertSerializer(alert).data)


class AuditViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsViewer]
    serializer_class = s.AuditSerializer
    pagination_class = Pages

    def get_queryset(self):
        entries = AuditEntry.objects.order_by("-at", "-id")
        if value := self.request.query_params.get("saga_id"):
            entries = entries.filter(saga_id=parse_uuid(value))
        return entries


class EffectViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The demo services' effects ledger."""

    permission_classes = [IsViewer]
    serializer_class = s.EffectSerializer
    pagination_class = Pages

    def get_queryset(self):
        effects = Effect.objects.order_by("created_at", "id")
        if value := self.request.query_params.get("correlation_id"):
            effects = effects.filter(correlation_id=value)
        return effects

    @extend_schema(parameters=[OpenApiParameter("correlation_id", str)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


