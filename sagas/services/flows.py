"""Choreography: events received from services and published to the flow, in flow order.

An event travels through the worker queue: it is recorded as received (EventReceived, in the
transaction that starts the saga or that the events API runs), and `tasks.publish_event` applies
it. An event a step's outcome publishes is written in the same transaction as that outcome
(durable with it, and one queue hop fewer); the calls it makes due are enqueued after commit.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import choreography, machine
from .state import (
    CONFLICT_RETRIES,
    RECEIVED,
    Conflict,
    Loaded,
    after_commit,
    attempts_made,
    due_works,
    enqueue_publish,
    load,
    write,
)


def flow_state(saga_id) -> choreography.FlowState | None:
    """A choreographed saga's flow state, for reading (None for an orchestration or an unknown saga)."""
    loaded = load(saga_id)
    return None if loaded is None else loaded.flow


def publish_event(saga_id, event_type: str = "") -> int:
    """Apply the received events that can be applied now, in flow order; returns how many were.

    An event that came early (before the event its emitter listens to) stays held until that one
    has been published, then is applied with it. Safe to repeat: an event is published once.
    """
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                loaded = load(saga_id)
                if loaded is None or loaded.flow is None:
                    return 0
                return apply_received(loaded, timezone.now())
        except Conflict:
            continue
    raise Conflict(f"saga {saga_id}: could not publish {event_type or 'its events'} after {CONFLICT_RETRIES} tries")


def apply_received(loaded: Loaded, now: datetime) -> int:
    applied = 0
    while waiting := applicable_received(loaded):
        event_type, body = waiting
        transition = choreography.published(loaded.flow, event_type, observed=True)
        data = body.get("data")
        saga_fields = {"context": {**loaded.saga.context, **data}} if isinstance(data, dict) and data else {}
        write(loaded, transition, now, saga_fields=saga_fields,
               event_data={"observed": True, "source": body.get("source", "")},
               data_by_type={event_type: {"correlation_id": loaded.saga.correlation_id, "source": body.get("source", ""),
                                          "id": body.get("id", ""), "data": data if isinstance(data, dict) else {}}})
        for due in due_works(transition):
            after_commit(loaded.saga, due, attempts_made(loaded.steps[due.index], due.kind) + 1, 0)
        loaded.flow, loaded.state = transition.flow, transition.state
        applied += 1
    return applied


def apply_held(loaded: Loaded, transition, now: datetime) -> None:
    """Choreography: after `transition` was written, apply the held events that what it published unblocks."""
    if loaded.flow is not None and loaded.received:
        loaded.flow, loaded.state = transition.flow, transition.state
        apply_received(loaded, now)


def applicable_received(loaded: Loaded) -> tuple[str, dict] | None:
    """The first received event not yet published that can be applied now."""
    return next(((event_type, body) for event_type, body in loaded.received
                 if event_type not in loaded.flow.published and choreography.applicable(loaded.flow, event_type)),
                None)


def receive(loaded: Loaded, event_type: str, body: dict, now: datetime) -> None:
    write(loaded, choreography.Transition(loaded.flow, (machine.Event(RECEIVED),)), now,
           data_by_type={RECEIVED: {"type": event_type, **body}})
    loaded.received.append((event_type, body))
    saga_id = loaded.saga.pk
    transaction.on_commit(lambda: enqueue_publish(saga_id, event_type))
