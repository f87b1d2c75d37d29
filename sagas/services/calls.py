"""A worker's call of a step: claim it (an attempt row with a lease), then record its outcome."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import machine
from ..machine import Kind, SagaStatus
from ..models import StepAttempt
from .flows import apply_held
from .state import (
    CONFLICT_RETRIES,
    Conflict,
    after_commit,
    attempt_counter,
    attempts_made,
    due_works,
    load,
    published_data,
    write,
)


@dataclass(frozen=True)
class Call:
    """A claimed call: everything a worker needs to make it without touching the database."""

    attempt_id: int
    saga_id: str
    correlation_id: str
    step_name: str
    kind: Kind
    index: int
    number: int
    handler: str
    timeout_seconds: float
    idempotency_key: str
    context: dict


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    output: dict | None = None
    error: str = ""
    traceback: str = ""
    permanent: bool = False
    # HTTP handlers: the status code answered and a bounded excerpt of the body.
    http_status: int | None = None
    response_excerpt: str = ""


def claim(saga_id: str, kind: Kind, index: int, number: int, worker: str = "") -> Call | None:
    """Begin attempt `number` of a step's action or compensation; None if it is not due (anymore).

    A duplicate delivery of the same message, or a call overtaken by an operator, finds the
    attempt counter or the saga state moved on and returns None without writing anything.
    """
    work = machine.Work(Kind(kind), index)
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                loaded = load(saga_id)
                if loaded is None:
                    return None
                step = loaded.steps[index] if index < len(loaded.steps) else None
                if step is None or attempts_made(step, work.kind) != number - 1:
                    return None
                state, prefix = loaded.rule_state, ()
                if state.status == SagaStatus.PENDING and loaded.flow is None:
                    # Orchestration starts with its first call; a choreography starts with its start event.
                    started = machine.start(state)
                    state, prefix = started.state, started.events
                try:
                    transition = loaded.rules.claim(state, work)
                except machine.InvalidTransition:
                    return None
                transition = replace(transition, events=prefix + transition.events)
                now = timezone.now()
                key = step.idempotency_key(work.kind)
                attempt = StepAttempt.objects.create(
                    saga_id=saga_id, step=step, kind=work.kind, number=number, idempotency_key=key,
                    started_at=now, worker=worker,
                    lease_expires_at=now + timedelta(seconds=step.timeout_seconds + settings.SAGABOARD_LEASE_GRACE_SECONDS),
                )
                write(loaded, transition, now, step_fields={index: {attempt_counter(work.kind): number}},
                       saga_fields={"started_at": loaded.saga.started_at or now, "wake_at": None},
                       event_data={"attempt": number, "idempotency_key": key})
        except Conflict:
            continue
        except IntegrityError:
            return None  # the same attempt was claimed by a concurrent delivery
        return Call(
            attempt_id=attempt.pk, saga_id=str(saga_id), correlation_id=loaded.saga.correlation_id,
            step_name=step.name, kind=work.kind, index=index, number=number,
            handler=step.action if work.kind == Kind.ACTION else step.compensation,
            timeout_seconds=step.timeout_seconds, idempotency_key=key, context=loaded.saga.context,
        )
    raise Conflict(f"saga {saga_id}: could not claim {work} after {CONFLICT_RETRIES} tries")


def record_outcome(attempt: StepAttempt | Call, outcome: Outcome) -> bool:
    """Write an attempt's outcome and move the saga on; False if the attempt was already settled.

    `attempt` is the claimed `Call` (from a worker) or the attempt row (from recovery). The row is
    settled with a conditional update first, so a late report from a worker that recovery has
    given up on changes nothing.
    """
    attempt_id = attempt.attempt_id if isinstance(attempt, Call) else attempt.pk
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                now = timezone.now()
                settled = StepAttempt.objects.filter(pk=attempt_id, status=StepAttempt.Status.RUNNING).update(
                    status=StepAttempt.Status.SUCCEEDED if outcome.succeeded else StepAttempt.Status.FAILED,
                    finished_at=now, error=outcome.error[:10_000], traceback=outcome.traceback[:50_000],
                    output=outcome.output, http_status=outcome.http_status,
                    response_excerpt=outcome.response_excerpt[:10_000],
                )
                if not settled:
                    return False
                settle(attempt, outcome, now)
        except Conflict:
            continue
        return True
    raise Conflict(f"attempt {attempt_id}: could not record its outcome after {CONFLICT_RETRIES} tries")


def settle(attempt: StepAttempt | Call, outcome: Outcome, now: datetime) -> None:
    loaded = load(attempt.saga_id)
    if isinstance(attempt, Call):
        step, number = loaded.steps[attempt.index], attempt.number
    else:
        step, number = next(s for s in loaded.steps if s.pk == attempt.step_id), attempt.number
    work = machine.Work(Kind(attempt.kind), step.index)
    saga_fields: dict[str, Any] = {}
    if outcome.succeeded:
        transition = loaded.rules.succeeded(loaded.rule_state, work)
        if outcome.output and work.kind == Kind.ACTION:
            saga_fields["context"] = {**loaded.saga.context, **outcome.output}
        event_data = {"attempt": number}
    else:
        in_round = number - step.round_start + 1
        retryable = not outcome.permanent and in_round < step.max_attempts
        transition = loaded.rules.failed(loaded.rule_state, work, retryable)
        saga_fields["error"] = f"{step.name} {work.kind} attempt {number}: {outcome.error}"[:10_000]
        event_data = {"attempt": number, "error": outcome.error[:2000]}
    delay = 0.0
    if transition.is_retry:
        delay = step.backoff_seconds * (2 ** max(0, number - step.round_start))
        saga_fields["wake_at"] = now + timedelta(seconds=delay)
        event_data["retry_in_seconds"] = delay
    # Choreography: the event a step's outcome publishes is written in this same transaction.
    published = published_data(loaded, transition, source="sagaboard", step=step.name, attempt=number,
                                data=outcome.output or {}, **({} if outcome.succeeded else {"error": outcome.error[:2000]}))
    write(loaded, transition, now, step_fields={step.index: {}}, saga_fields=saga_fields, event_data=event_data,
           data_by_type=published)
    for due in due_works(transition):
        after_commit(loaded.saga, due, attempts_made(loaded.steps[due.index], due.kind) + 1, delay)
    apply_held(loaded, transition, now)
