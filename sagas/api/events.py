"""`POST /api/events/`: a choreography event reported by a service that sagaboard does not run;
and `GET /api/sagas/<id>/flow/`: one choreographed saga's observed events over the expected ones.

Body: `{"definition", "correlation_id", "type", "source", "data", "id"}` (CONTRACT.md section 2;
`id` is optional, the event's own id, used to record a redelivered event once). Operators' tokens
may post (a service gets a user with the operator role and a token).

- The first event for a (definition, correlation_id) creates the saga: 201. The start event's
  `data` becomes the saga's context; starting is idempotent like `POST /api/sagas/`.
- A later event is recorded and applied by a worker: 202. An event that came early (before the
  event that must precede it) is held, and applied in flow order once that one is published.
- The same event `id` again for the saga: 200, "already recorded", nothing written.
- Unknown definition, an orchestration, or an event type the flow neither listens to nor emits: 400.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db.models import Prefetch
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import choreography, services
from ..models import Definition, DefinitionStep, Saga, SagaEvent
from .permissions import IsOperatorOrReadOnly, IsViewer
from .serializers import SagaSummarySerializer
from .views import parse_uuid


class EventSerializer(serializers.Serializer):
    definition = serializers.CharField(max_length=100)
    correlation_id = serializers.CharField(max_length=200)
    type = serializers.CharField(max_length=50)
    source = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    data = serializers.JSONField(required=False, default=dict)
    id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate_data(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("data must be a JSON object")
        text = json.dumps(value)
        if "\\u0000" in text:
            raise serializers.ValidationError("data must not contain NUL characters")
        size = len(text.encode())
        if size > settings.SAGABOARD_MAX_CONTEXT_BYTES:
            raise serializers.ValidationError(
                f"data is {size} bytes; the limit is {settings.SAGABOARD_MAX_CONTEXT_BYTES} bytes (256 KiB)")
        return value


ANSWER = inline_serializer("EventAnswer", {
    "result": serializers.ChoiceField(["started", "recorded", "duplicate"]),
    "detail": serializers.CharField(),
    "type": serializers.CharField(),
    "id": serializers.CharField(),
    "saga": SagaSummarySerializer(),
})
CODES = {"started": status.HTTP_201_CREATED, "recorded": status.HTTP_202_ACCEPTED, "duplicate": status.HTTP_200_OK}


class EventsView(APIView):
    permission_classes = [IsOperatorOrReadOnly]

    @extend_schema(request=EventSerializer, responses={201: ANSWER, 202: ANSWER, 200: ANSWER})
    def post(self, request):
        serializer = EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        definition = _definition_for(data["definition"], data["correlation_id"])
        _check_type(definition, data["type"])
        saga, result = services.receive_event(definition, data["correlation_id"], data["type"], data["source"],
                                              data["data"], data["id"])
        saga = Saga.objects.get(pk=saga.pk)
        detail = {
            "started": f"{data['type']} recorded: it started saga {saga.pk}",
            "recorded": f"{data['type']} recorded for saga {saga.pk}; a worker applies it in flow order",
            "duplicate": f"event {data['id']!r} was already recorded for saga {saga.pk}; nothing new was recorded",
        }[result]
        body = {"result": result, "detail": detail, "type": data["type"], "id": data["id"],
                "saga": SagaSummarySerializer(saga).data}
        return Response(body, status=CODES[result])


def _definition_for(name: str, correlation_id: str) -> Definition:
    """The version the saga of this correlation id runs on, or the latest for a new saga."""
    steps = Prefetch("steps", DefinitionStep.objects.order_by("index"))
    saga = Saga.objects.filter(definition_name=name, correlation_id=correlation_id).only("definition_id").first()
    found = Definition.objects.prefetch_related(steps)
    definition = found.filter(pk=saga.definition_id).first() if saga else \
        found.filter(name=name).order_by("-version").first()
    if definition is None:
        raise ValidationError({"definition": [f"no definition named {name!r}"]})
    if definition.mode != Definition.Mode.CHOREOGRAPHY:
        raise ValidationError({"definition": [f"{name!r} is an orchestration: only choreographies take events "
                                              f"(start it with POST /api/sagas/)"]})
    return definition


def _check_type(definition: Definition, event_type: str) -> None:
    steps = list(definition.steps.all())
    flows = [choreography.Flow(s.on, s.emits, s.emits_on_failure, tuple(s.compensate_on or ())) for s in steps]
    known = {e for f in flows for e in (f.on, f.emits, f.emits_on_failure, *f.compensate_on) if e}
    if event_type not in known:
        raise ValidationError({"type": [
            f"no step of {definition.name} v{definition.version} listens to or emits {event_type!r}, and it is not "
            f"its start event ({choreography.start_event(flows)!r}); its events are {sorted(known)}"]})


class SagaFlowView(APIView):
    """`GET /api/sagas/<id>/flow/`: a choreographed saga's events, observed over what the definition expects.

    `events` lists every event of the definition in flow order, each with whether (and when) it was
    observed; `waiting_for` what the flow waits for now, `missing` the events of the success path
    not observed yet, `held` events received early and not applied yet, and `late` whether the flow
    waited past its definition's `deadline_seconds` (a WARNING alert was raised).
    """

    permission_classes = [IsViewer]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, saga_id: str):
        saga = Saga.objects.select_related("definition").filter(pk=parse_uuid(saga_id)).first()
        if saga is None:
            raise NotFound(f"no saga with id {saga_id}")
        flow = services.flow_state(saga.pk)
        if flow is None:
            raise NotFound(f"saga {saga.pk} is an orchestration: it has no flow of events")
        return Response(flow_json(saga, flow))


def flow_json(saga: Saga, flow: choreography.FlowState) -> dict:
    expected = choreography.flow_events(flow.flows)
    observed: dict[str, SagaEvent] = {}
    received: list[dict] = []
    late = False
    for event in SagaEvent.objects.filter(saga=saga, type__in=[*expected, "EventReceived", "WaitedTooLong"]) \
            .order_by("seq"):
        if event.type == "EventReceived":
            received.append(event.data)
        elif event.type == "WaitedTooLong":
            late = True
        else:
            observed.setdefault(event.type, event)
    success_path = [e for e in expected if e == choreography.start_event(flow.flows)
                    or any(f.emits == e for f in flow.flows)]
    active = saga.status in ("pending", "running", "compensating")
    return {
        "saga_id": str(saga.pk), "definition": saga.definition_name, "correlation_id": saga.correlation_id,
        "status": saga.status, "mode": "choreography",
        "events": [{"type": name, "observed": name in observed,
                    "seq": observed[name].seq if name in observed else None,
                    "at": observed[name].at if name in observed else None,
                    "step": observed[name].step if name in observed else None,
                    "source": observed[name].data.get("source", "") if name in observed else None}
                   for name in expected],
        "observed": [event.type for event in sorted(observed.values(), key=lambda e: e.seq)],
        "waiting_for": choreography.expected_events(flow) if active else [],
        "missing": [e for e in success_path if e not in observed] if active else [],
        "held": [r.get("type") for r in received if r.get("type") not in observed],
        "deadline_seconds": saga.definition.deadline_seconds,
        "late": late and active,
    }


urlpatterns = [
    path("events/", EventsView.as_view(), name="events"),
    path("sagas/<str:saga_id>/flow/", SagaFlowView.as_view(), name="saga-flow"),
]
