"""The live messages (CONTRACT.md section 5): a saga's summary, a step with its attempts, an event,
an alert, each in the JSON the REST API gives for it.

Steps, attempts and events are built straight from the rows: every step of every saga sends them,
and a DRF serializer costs several times the message. `tests/test_messages.py` holds them equal
to the API's serializers. Alerts are rare and go through their serializer.
"""

from __future__ import annotations

import functools
from enum import Enum

from django.utils import timezone
from rest_framework.fields import DateTimeField

_datetime = DateTimeField()  # the API's format


def _time(value) -> str | None:
    """A datetime as the API writes it: ISO 8601 in the default time zone, UTC as `Z`.

    What DRF's `DateTimeField.to_representation` does, without its per-call settings and
    current-time-zone lookups (a saga's four steps format some thirty of these)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return _datetime.to_representation(value)
    text = value.astimezone(timezone.get_default_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _choice(value):
    """A choice as DRF writes it: its stored string."""
    return value.value if isinstance(value, Enum) else value


def saga_message(saga) -> dict:
    return {"type": "saga", "saga": {
        "id": str(saga.pk), "definition": saga.definition_name, "correlation_id": saga.correlation_id,
        "status": str(saga.status), "current_step": saga.current_step, "version": saga.version,
        "created_at": _time(saga.created_at), "updated_at": _time(saga.updated_at),
    }}


def step_message(saga_id, version: int, step, attempts) -> dict:
    """`step` with its `attempts`, ordered as the API orders them (started_at, id)."""
    return {"type": "step", "saga_id": str(saga_id), "version": version,
            "step": step_json(step, attempts)}


def event_message(saga_id, version: int, event) -> dict:
    return {"type": "event", "saga_id": str(saga_id), "version": version, "event": event_json(event)}


def alert_message(alert) -> dict:
    return {"type": "alert", "alert": _alert_serializer().to_representation(alert)}


def step_json(step, attempts) -> dict:
    """As `api.serializers.StepSerializer`."""
    return {
        "name": step.name, "index": int(step.index), "status": _choice(step.status), "action": step.action,
        "compensation": step.compensation, "max_attempts": int(step.max_attempts),
        "backoff_seconds": float(step.backoff_seconds), "timeout_seconds": float(step.timeout_seconds),
        "compensate_on_failure": bool(step.compensate_on_failure), "resolved_kind": _choice(step.resolved_kind),
        "attempts": [attempt_json(attempt) for attempt in attempts],
    }


def attempt_json(attempt) -> dict:
    """As `api.serializers.AttemptSerializer`."""
    return {
        "kind": _choice(attempt.kind), "number": int(attempt.number), "status": _choice(attempt.status),
        "idempotency_key": attempt.idempotency_key, "started_at": _time(attempt.started_at),
        "finished_at": _time(attempt.finished_at), "error": attempt.error, "traceback": attempt.traceback,
        "output": attempt.output, "worker": attempt.worker,
        "http_status": None if attempt.http_status is None else int(attempt.http_status),
        "response_excerpt": attempt.response_excerpt,
    }


def event_json(event) -> dict:
    """As `api.serializers.EventSerializer`."""
    return {"seq": int(event.seq), "type": event.type, "step": event.step, "at": _time(event.at), "data": event.data}


@functools.cache
def _alert_serializer():
    from .api.serializers import AlertSerializer

    return AlertSerializer()  # built once: a new serializer per message costs more than the message
