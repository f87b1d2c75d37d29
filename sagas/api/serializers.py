"""How sagaboard's records look as JSON, in the API and in the websocket messages alike."""

from __future__ import annotations

from rest_framework import serializers

from ..models import Alert, AuditEntry, Effect, Saga, SagaEvent, SagaStep, StepAttempt


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepAttempt
        fields = ("kind", "number", "status", "idempotency_key", "started_at", "finished_at", "error",
                  "traceback", "output", "worker", "http_status", "response_excerpt")


class StepSerializer(serializers.ModelSerializer):
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = SagaStep
        fields = ("name", "index", "status", "action", "compensation", "max_attempts", "backoff_seconds",
                  "timeout_seconds", "compensate_on_failure", "resolved_kind", "attempts")


class SagaSummarySerializer(serializers.ModelSerializer):
    definition = serializers.CharField(source="definition_name", read_only=True)

    class Meta:
        model = Saga
        fields = ("id", "definition", "definition_version", "correlation_id", "status", "current_step", "error",
                  "version", "created_at", "started_at", "finished_at", "updated_at")


class SagaSerializer(SagaSummarySerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(SagaSummarySerializer.Meta):
        fields = SagaSummarySerializer.Meta.fields + ("context", "steps")


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = SagaEvent
        fields = ("seq", "type", "step", "at", "data")


class AlertSerializer(serializers.ModelSerializer):
    saga_id = serializers.UUIDField(read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    definition = serializers.CharField(source="saga.definition_name", read_only=True)
    correlation_id = serializers.CharField(source="saga.correlation_id", read_only=True)

    class Meta:
        model = Alert
        fields = ("id", "saga_id", "severity", "message", "open", "created_at", "closed_at", "acknowledged_by",
                  "acknowledged_at", "definition", "correlation_id")


class AuditSerializer(serializers.ModelSerializer):
    saga_id = serializers.UUIDField(read_only=True)
    user = serializers.CharField(source="username", read_only=True)

    class Meta:
        model = AuditEntry
        fields = ("id", "saga_id", "user", "action", "reason", "status_before", "status_after", "at")


class EffectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Effect
        fields = ("idempotency_key", "service", "operation", "correlation_id", "created_at")


class StartSagaSerializer(serializers.Serializer):
    definition = serializers.CharField(max_length=100)
    version = serializers.IntegerField(min_value=1, required=False)
    context = serializers.JSONField(required=False, default=dict)
    correlation_id = serializers.CharField(max_length=200, required=False, allow_blank=False)

    def validate_context(self, value):
        import json

        from django.conf import settings

        if not isinstance(value, dict):
            raise serializers.ValidationError("context must be a JSON object")
        size = len(json.dumps(value).encode())
        if size > settings.SAGABOARD_MAX_CONTEXT_BYTES:
            raise serializers.ValidationError(
                f"context is {size} bytes; the limit is {settings.SAGABOARD_MAX_CONTEXT_BYTES} bytes (256 KiB)")
        return value


class ActionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, trim_whitespace=True,
                                   error_messages={"required": "a reason is required for every operator action",
                                                   "blank": "a reason is required for every operator action"})


class DefinitionStepSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, allow_blank=True)
    action = serializers.CharField(max_length=500, allow_blank=True)
    compensation = serializers.CharField(max_length=500, allow_blank=True, allow_null=True, required=False)
    max_attempts = serializers.IntegerField(required=False, allow_null=True)
    backoff_seconds = serializers.FloatField(required=False, allow_null=True)
    timeout_seconds = serializers.FloatField(required=False, allow_null=True)
    compensate_on_failure = serializers.BooleanField(required=False, default=False)
    # Choreography (mode "choreography"): the event the step reacts to, what it publishes, what undoes it.
    on = serializers.CharField(max_length=100, allow_blank=True, required=False)
    emits = serializers.CharField(max_length=100, allow_blank=True, required=False)
    emits_on_failure = serializers.CharField(max_length=100, allow_blank=True, required=False)
    compensate_on = serializers.ListField(child=serializers.CharField(max_length=100), required=False,
                                         max_length=50)


class DefinitionSerializer(serializers.Serializer):
    """The contract's definition JSON, validated by the rules of sagas.definitions."""

    name = serializers.SlugField(max_length=100)
    version = serializers.IntegerField(read_only=True)
    mode = serializers.ChoiceField(choices=["orchestration", "choreography"], default="orchestration")
    description = serializers.CharField(allow_blank=True, required=False, default="")
    on_failure = serializers.ChoiceField(choices=["compensate", "suspend"], default="compensate")
    # Choreography: how long a flow may wait for its next event before a WARNING alert.
    deadline_seconds = serializers.FloatField(required=False, allow_null=True, min_value=1, max_value=30 * 86400)
    steps = DefinitionStepSerializer(many=True, allow_empty=False,
                                     error_messages={"empty": "a definition needs at least one step"})

    def validate_steps(self, steps):
        from ..definitions import step_problems

        problems = step_problems(steps)
        if any(problems):
            raise serializers.ValidationError(problems)
        return steps

    def validate(self, data):
        from ..definitions import choreography_problems

        if data.get("mode") == "choreography" and (problems := choreography_problems(data.get("steps") or [])):
            raise serializers.ValidationError({"steps": problems})
        return data
