"""Recovery (Celery beat): settle attempts whose worker went silent, wake stalled sagas, flag late flows."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import alerts, choreography, machine
from ..machine import SagaStatus
from ..models import Definition, Saga, StepAttempt
from .calls import Outcome, record_outcome
from .flows import applicable_received
from .state import Conflict, attempts_made, enqueue, enqueue_publish, load, write

log = logging.getLogger("sagas.services")


def recover(now: datetime | None = None) -> dict[str, int]:
    """Give up on attempts whose worker went silent past their lease, and wake stalled sagas.

    Run periodically (Celery beat). Both moves are safe to repeat and to race: the attempt is
    settled by a conditional update, and a re-enqueued call is claimed at most once.
    """
    now = now or timezone.now()
    lost = 0
    outcome = Outcome(succeeded=False, error="no report from the worker before its lease expired "
                                             "(worker lost or call timed out); retried per policy")
    for attempt in StepAttempt.objects.filter(status=StepAttempt.Status.RUNNING, lease_expires_at__lt=now)[:500]:
        lost += record_outcome(attempt, outcome)
    stalled = 0
    quiet_since = now - timedelta(seconds=settings.SAGABOARD_STALL_SECONDS)
    candidates = Saga.objects.filter(status__in=[s.value for s in machine.ACTIVE], updated_at__lt=quiet_since) \
        .exclude(wake_at__gt=now).exclude(attempts__status=StepAttempt.Status.RUNNING).values_list("pk", flat=True)
    for saga_id in candidates[:500]:
        due = next_work(saga_id)
        if due is None and has_unapplied_event(saga_id):
            # Choreography: a received event whose publish task was lost.
            Saga.objects.filter(pk=saga_id).update(wake_at=now + timedelta(seconds=settings.SAGABOARD_STALL_SECONDS))
            enqueue_publish(saga_id, "")
            stalled += 1
        elif due is not None:
            # Not again before another quiet spell, so a long queue does not fill up with copies.
            Saga.objects.filter(pk=saga_id).update(wake_at=now + timedelta(seconds=settings.SAGABOARD_STALL_SECONDS))
            enqueue(saga_id, *due, 0)
            stalled += 1
    late = check_deadlines(now)
    if lost or stalled or late:
        log.warning("recovery: %d lost attempts settled, %d stalled sagas woken, %d flows late", lost, stalled, late)
    return {"lost_attempts": lost, "stalled_sagas": stalled, "late_flows": late}


def next_work(saga_id) -> tuple[machine.Work, int] | None:
    """The call an active saga waits for and the number its next attempt takes, or None."""
    loaded = load(saga_id)
    if loaded is None:
        return None
    state = loaded.rule_state
    if state.status == SagaStatus.PENDING and loaded.flow is None:
        state = machine.start(state).state
    work = loaded.rules.expected_work(state)
    if work is None:
        return None
    return work, attempts_made(loaded.steps[work.index], work.kind) + 1


def has_unapplied_event(saga_id) -> bool:
    loaded = load(saga_id)
    return loaded is not None and loaded.flow is not None and applicable_received(loaded) is not None


def check_deadlines(now: datetime | None = None) -> int:
    """Choreography: one WARNING alert (and a WaitedTooLong event) for each flow that has waited longer
    than its definition's `deadline_seconds` for its next event. Returns how many were raised."""
    now = now or timezone.now()
    late = Saga.objects.filter(
        status__in=[s.value for s in machine.ACTIVE], definition__mode=Definition.Mode.CHOREOGRAPHY,
        definition__deadline_seconds__isnull=False,
    ).exclude(events__type="WaitedTooLong").select_related("definition").only(
        "pk", "updated_at", "definition__deadline_seconds")
    raised = 0
    for saga in late[:500]:
        deadline = saga.definition.deadline_seconds
        if saga.updated_at > now - timedelta(seconds=deadline):
            continue
        with transaction.atomic():
            loaded = load(saga.pk)
            if loaded is None or loaded.saga.updated_at != saga.updated_at:
                continue  # it moved meanwhile
            waiting_for = choreography.expected_events(loaded.flow)
            try:
                write(loaded, choreography.Transition(loaded.flow, (machine.Event("WaitedTooLong"),)), now,
                       data_by_type={"WaitedTooLong": {"deadline_seconds": deadline, "waiting_for": waiting_for,
                                                       "since": saga.updated_at.isoformat()}})
            except Conflict:
                continue
            alerts.waited_too_long(loaded.saga, deadline, waiting_for)
        raised += 1
    return raised
