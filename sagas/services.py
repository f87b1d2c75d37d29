"""The only code that changes saga state: start, claim a call, record its outcome, operator actions.

Each change is one transaction: a conditional UPDATE of the saga on its `version` (whose row
count settles races between workers and operators), the steps that changed, the events it
appends, and the alerts it opens or closes. Enqueueing the next call and publishing to the
channel layer happen only after commit. Handlers are never called from here inside a
transaction: `tasks.py` claims, calls (see `execution.py`) and records in three moves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import alerts, events, machine
from .machine import Kind, SagaStatus
from .models import AuditEntry, Definition, Saga, SagaEvent, SagaStep, StepAttempt

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 20


class Conflict(Exception):
    """Someone else changed the saga first (its version moved); nothing was written."""


class NotAllowed(Exception):
    """The request does not fit the saga's state (an invalid operator action); nothing changed."""


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


@dataclass
class _Loaded:
    saga: Saga
    steps: list[SagaStep]
    state: machine.SagaState = field(init=False)

    def __post_init__(self) -> None:
        self.state = machine.SagaState(
            status=SagaStatus(self.saga.status),
            on_failure=machine.OnFailure(self.saga.on_failure),
            steps=tuple(
                machine.StepState(
                    name=step.name,
                    status=machine.StepStatus(step.status),
                    has_compensation=bool(step.compensation),
                    compensate_on_failure=step.compensate_on_failure,
                    resolved_kind=Kind(step.resolved_kind) if step.resolved_kind else None,
                )
                for step in self.steps
            ),
        )


# --- starting ----------------------------------------------------------------------------------

def start_saga(definition: Definition, context: dict, correlation_id: str) -> tuple[Saga, bool]:
    """Create a saga pinned to `definition` and enqueue its first step.

    Idempotent on (definition name, correlation_id): the same pair again returns the existing
    saga and False, starting nothing.
    """
    existing = Saga.objects.filter(definition_name=definition.name, correlation_id=correlation_id).first()
    if existing is not None:
        return existing, False
    definition_steps = list(definition.steps.all())
    try:
        with transaction.atomic():
            saga = Saga.objects.create(
                definition=definition, definition_name=definition.name, definition_version=definition.version,
                on_failure=definition.on_failure, correlation_id=correlation_id, context=context,
                current_step=definition_steps[0].name if definition_steps else "",
            )
            SagaStep.objects.bulk_create(
                SagaStep(saga=saga, index=s.index, name=s.name, action=s.action, compensation=s.compensation,
                         max_attempts=s.max_attempts, backoff_seconds=s.backoff_seconds,
                         timeout_seconds=s.timeout_seconds, compensate_on_failure=s.compensate_on_failure)
                for s in definition_steps
            )
            _after_commit(saga, machine.Work(Kind.ACTION, 0), number=1, delay=0)
            events.publish_after_commit(saga, [], [])
    except IntegrityError:
        # Another request started the same (definition, correlation_id) a moment before us.
        existing = Saga.objects.filter(definition_name=definition.name, correlation_id=correlation_id).first()
        if existing is None:
            raise
        return existing, False
    return saga, True


# --- a worker's call: claim, then record -------------------------------------------------------

def claim(saga_id: str, kind: Kind, index: int, number: int, worker: str = "") -> Call | None:
    """Begin attempt `number` of a step's action or compensation; None if it is not due (anymore).

    A duplicate delivery of the same message, or a call overtaken by an operator, finds the
    attempt counter or the saga state moved on and returns None without writing anything.
    """
    work = machine.Work(Kind(kind), index)
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                loaded = _load(saga_id)
                if loaded is None:
                    return None
                step = loaded.steps[index] if index < len(loaded.steps) else None
                if step is None or _attempts_made(step, work.kind) != number - 1:
                    return None
                state, prefix = loaded.state, ()
                if state.status == SagaStatus.PENDING:
                    started = machine.start(state)
                    state, prefix = started.state, started.events
                try:
                    transition = machine.claim(state, work)
                except machine.InvalidTransition:
                    return None
                transition = machine.Transition(transition.state, prefix + transition.events)
                now = timezone.now()
                key = step.idempotency_key(work.kind)
                attempt = StepAttempt.objects.create(
                    saga_id=saga_id, step=step, kind=work.kind, number=number, idempotency_key=key,
                    started_at=now, worker=worker,
                    lease_expires_at=now + timedelta(seconds=step.timeout_seconds + settings.SAGABOARD_LEASE_GRACE_SECONDS),
                )
                _write(loaded, transition, now, step_fields={index: {_attempt_counter(work.kind): number}},
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
                _settle(attempt, outcome, now)
        except Conflict:
            continue
        return True
    raise Conflict(f"attempt {attempt_id}: could not record its outcome after {CONFLICT_RETRIES} tries")


def _settle(attempt: StepAttempt | Call, outcome: Outcome, now: datetime) -> None:
    loaded = _load(attempt.saga_id)
    if isinstance(attempt, Call):
        step, number = loaded.steps[attempt.index], attempt.number
    else:
        step, number = next(s for s in loaded.steps if s.pk == attempt.step_id), attempt.number
    work = machine.Work(Kind(attempt.kind), step.index)
    saga_fields: dict[str, Any] = {}
    if outcome.succeeded:
        transition = machine.succeeded(loaded.state, work)
        if outcome.output and work.kind == Kind.ACTION:
            saga_fields["context"] = {**loaded.saga.context, **outcome.output}
        event_data = {"attempt": number}
    else:
        in_round = number - step.round_start + 1
        retryable = not outcome.permanent and in_round < step.max_attempts
        transition = machine.failed(loaded.state, work, retryable)
        saga_fields["error"] = f"{step.name} {work.kind} attempt {number}: {outcome.error}"[:10_000]
        event_data = {"attempt": number, "error": outcome.error[:2000]}
    delay = 0.0
    if transition.is_retry:
        delay = step.backoff_seconds * (2 ** max(0, number - step.round_start))
        saga_fields["wake_at"] = now + timedelta(seconds=delay)
        event_data["retry_in_seconds"] = delay
    _write(loaded, transition, now, step_fields={step.index: {}}, saga_fields=saga_fields, event_data=event_data)
    if transition.work is not None:
        _after_commit(loaded.saga, transition.work, _attempts_made(loaded.steps[transition.work.index],
                                                                    transition.work.kind) + 1, delay)


# --- operators ---------------------------------------------------------------------------------

def act(saga_id: str, action: str, user, reason: str) -> Saga:
    """Apply an operator action; raises NotAllowed (nothing changed) or Conflict (someone was first)."""
    operator_action = machine.OperatorAction(action)
    with transaction.atomic():
        loaded = _load(saga_id)
        if loaded is None:
            raise Saga.DoesNotExist(saga_id)
        in_flight = StepAttempt.objects.filter(saga_id=saga_id, status=StepAttempt.Status.RUNNING,
                                               kind=Kind.ACTION).exists()
        try:
            transition = machine.act(loaded.state, operator_action, in_flight=in_flight)
        except machine.InvalidTransition as exc:
            raise NotAllowed(str(exc)) from None
        now = timezone.now()
        status_before = loaded.saga.status
        step_fields: dict[int, dict] = {}
        if transition.work is not None and operator_action == machine.OperatorAction.RETRY:
            # A fresh round of max_attempts for the step the operator retries.
            stuck = loaded.steps[transition.work.index]
            step_fields[stuck.index] = {"round_start": _attempts_made(stuck, transition.work.kind) + 1}
        operator_event = machine.Event("OperatorAction")
        transition = machine.Transition(transition.state, (operator_event, *transition.events), transition.work)
        event_data = {"action": action, "reason": reason, "user": user.get_username(),
                      "status_before": status_before, "status_after": transition.state.status.value}
        _write(loaded, transition, now, step_fields=step_fields, saga_fields={"wake_at": None},
               event_data=event_data)
        AuditEntry.objects.create(saga=loaded.saga, user=user, username=user.get_username(), action=action,
                                  reason=reason, status_before=status_before,
                                  status_after=transition.state.status.value)
        if transition.work is not None:
            _after_commit(loaded.saga, transition.work,
                          _attempts_made(loaded.steps[transition.work.index], transition.work.kind) + 1, 0)
    loaded.saga.refresh_from_db()
    return loaded.saga


# --- recovery ----------------------------------------------------------------------------------

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
        if due is not None:
            # Not again before another quiet spell, so a long queue does not fill up with copies.
            Saga.objects.filter(pk=saga_id).update(wake_at=now + timedelta(seconds=settings.SAGABOARD_STALL_SECONDS))
            _enqueue(saga_id, *due, 0)
            stalled += 1
    if lost or stalled:
        log.warning("recovery: %d lost attempts settled, %d stalled sagas woken", lost, stalled)
    return {"lost_attempts": lost, "stalled_sagas": stalled}


def next_work(saga_id) -> tuple[machine.Work, int] | None:
    """The call an active saga waits for and the number its next attempt takes, or None."""
    loaded = _load(saga_id)
    if loaded is None:
        return None
    state = loaded.state
    if state.status == SagaStatus.PENDING:
        state = machine.start(state).state
    work = machine.expected_work(state)
    if work is None:
        return None
    return work, _attempts_made(loaded.steps[work.index], work.kind) + 1


# --- writing -----------------------------------------------------------------------------------

def _load(saga_id) -> _Loaded | None:
    saga = Saga.objects.filter(pk=saga_id).first()
    if saga is None:
        return None
    return _Loaded(saga, list(saga.steps.order_by("index")))


def _attempt_counter(kind: Kind) -> str:
    return "action_attempts" if kind == Kind.ACTION else "compensation_attempts"


def _attempts_made(step: SagaStep, kind: Kind) -> int:
    return getattr(step, _attempt_counter(kind))


def _write(loaded: _Loaded, transition: machine.Transition, now: datetime, *,
           step_fields: dict[int, dict] | None = None, saga_fields: dict | None = None,
           event_data: dict | None = None) -> None:
    """Write a transition: the saga (conditionally on its version), changed steps, events, alerts."""
    saga, new = loaded.saga, transition.state
    step_fields = dict(step_fields or {})
    for index, (old_step, new_step) in enumerate(zip(loaded.state.steps, new.steps, strict=True)):
        if old_step != new_step:
            step_fields.setdefault(index, {}).update(
                status=new_step.status.value, resolved_kind=new_step.resolved_kind.value if new_step.resolved_kind else "")
    fields = dict(saga_fields or {})
    fields.update(status=new.status.value, version=saga.version + 1,
                  event_seq=saga.event_seq + len(transition.events), updated_at=now,
                  current_step=_current_step_name(new, transition, saga.current_step))
    if new.status in machine.TERMINAL and saga.finished_at is None:
        fields["finished_at"] = now
    updated = Saga.objects.filter(pk=saga.pk, version=saga.version).update(**fields)
    if not updated:
        raise Conflict(f"saga {saga.pk} moved past version {saga.version}")
    for index, changes in step_fields.items():
        if changes:
            SagaStep.objects.filter(pk=loaded.steps[index].pk).update(**changes)
        for name, value in changes.items():
            setattr(loaded.steps[index], name, value)
    created = SagaEvent.objects.bulk_create(
        SagaEvent(saga_id=saga.pk, seq=saga.event_seq + i, type=event.type, at=now,
                  step=None if event.step is None else new.steps[event.step].name,
                  data=event_data if event.step is not None or event.type == "OperatorAction" else {})
        for i, event in enumerate(transition.events, start=1)
    )
    old_status = saga.status
    for name, value in fields.items():
        setattr(saga, name, value)
    if old_status != new.status:
        alerts.status_changed(saga, old_status, new.status)
    events.publish_after_commit(saga, [loaded.steps[i] for i in sorted(step_fields)], created)


def _current_step_name(state: machine.SagaState, transition: machine.Transition, previous: str) -> str:
    if transition.work is not None:
        return state.steps[transition.work.index].name
    for status in (machine.StepStatus.RUNNING, machine.StepStatus.COMPENSATING, machine.StepStatus.FAILED,
                   machine.StepStatus.COMPENSATION_FAILED):
        index = state.index_of(status)
        if index is not None:
            return state.steps[index].name
    return "" if state.status in machine.TERMINAL else previous


def _after_commit(saga: Saga, work: machine.Work, number: int, delay: float) -> None:
    saga_id = saga.pk
    transaction.on_commit(lambda: _enqueue(saga_id, work, number, delay))


def _enqueue(saga_id, work: machine.Work, number: int, delay: float) -> None:
    from .tasks import run_step

    if not settings.SAGABOARD_ENQUEUE:
        return
    options = {"countdown": delay} if delay > 0 else {}
    run_step.apply_async((str(saga_id), work.kind.value, work.index, number), **options)
