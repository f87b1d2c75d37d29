"""Starting a saga: by a call (POST /api/sagas/), or by the first event a service reports."""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .. import choreography, events, machine
from ..machine import Kind
from ..models import Definition, DefinitionStep, Saga, SagaStep, StepSettings
from .flows import receive
from .sql import Batch
from .state import CONFLICT_RETRIES, Conflict, after_commit, load


def start_saga(definition: Definition, context: dict, correlation_id: str, *,
               publish_start: bool = True) -> tuple[Saga, bool]:
    """Create a saga pinned to `definition` and enqueue its first step.

    Idempotent on (definition name, correlation_id): the same pair again returns the existing
    saga and False, starting nothing. A choreography starts by receiving its start event (unless
    `publish_start` is False: the events API records the event that came first itself).
    """
    definition_steps = steps_of(definition)
    try:
        with transaction.atomic():
            # Inserted straight away: a start repeated for the same pair breaks the unique constraint
            # (below), which costs less than looking the pair up before every start.
            saga = Saga(
                definition=definition, definition_name=definition.name, definition_version=definition.version,
                on_failure=definition.on_failure, correlation_id=correlation_id, context=context,
                current_step=definition_steps[0].name if definition_steps else "",
            )
            rows = Batch()
            rows.insert([saga])
            rows.insert([SagaStep(saga=saga, index=s.index, name=s.name,
                                  **{f.name: getattr(s, f.name) for f in StepSettings._meta.fields})
                         for s in definition_steps])
            rows.run()
            saga._state.adding, saga._state.db = False, connection.alias
            if definition.mode != Definition.Mode.CHOREOGRAPHY:
                after_commit(saga, machine.Work(Kind.ACTION, 0), number=1, delay=0)
            elif publish_start:
                loaded = load(saga.pk)
                receive(loaded, choreography.start_event(loaded.flow.flows),
                         {"source": "sagaboard", "data": context}, timezone.now())
                saga = loaded.saga  # at the version the start event's record gave it
            events.publish_after_commit(saga, [], [])
    except IntegrityError:
        # Another request started the same (definition, correlation_id) a moment before us.
        existing = Saga.objects.filter(definition_name=definition.name, correlation_id=correlation_id).first()
        if existing is None:
            raise
        return existing, False
    return saga, True


# A definition's steps never change once saved (an edit is saved as a new version), so each
# process reads them once per definition, not once per saga started.
_STEPS_KEPT = 256
_steps_of: dict[tuple, tuple[DefinitionStep, ...]] = {}


def steps_of(definition: Definition) -> tuple[DefinitionStep, ...]:
    key = (definition.pk, definition.name, definition.version)
    steps = _steps_of.get(key)
    if steps is None:
        steps = tuple(DefinitionStep.objects.filter(definition_id=definition.pk).order_by("index"))
        if len(_steps_of) >= _STEPS_KEPT:
            _steps_of.clear()
        _steps_of[key] = steps
    return steps


def receive_event(definition: Definition, correlation_id: str, event_type: str, source: str = "",
                  data: dict | None = None, event_id: str = "") -> tuple[Saga, str]:
    """Record an event reported by a service outside sagaboard, to be applied by a worker.

    The first event for a correlation id creates the saga (the start event's data is its context).
    Returns the saga and "started", "recorded", or "duplicate" when an event with this id was
    recorded for the saga before (nothing is written then).
    """
    data = data if isinstance(data, dict) else {}
    flows = [choreography.Flow(s.on, s.emits, s.emits_on_failure) for s in definition.steps.all()]
    first = choreography.start_event(flows)
    saga, created = start_saga(definition, data if event_type == first else {}, correlation_id, publish_start=False)
    body = {"type": event_type, "id": event_id, "source": source, "correlation_id": correlation_id, "data": data}
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                loaded = load(saga.pk)
                if event_id and any(received.get("id") == event_id for _, received in loaded.received):
                    return loaded.saga, "duplicate"
                receive(loaded, event_type, body, timezone.now())
        except Conflict:
            continue
        return loaded.saga, "started" if created else "recorded"
    raise Conflict(f"saga {saga.pk}: could not record {event_type} after {CONFLICT_RETRIES} tries")
