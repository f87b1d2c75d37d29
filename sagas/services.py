"""The only code that changes saga state: start, claim a call, record its outcome, operator actions.

Each change is one transaction: a conditional UPDATE of the saga on its `version` (whose row
count settles races between workers and operators), the steps that changed, the events it
appends, and the alerts it opens or closes. Enqueueing the next call and publishing to the
channel layer happen only after commit. Handlers are never called from here inside a
transaction: `tasks.py` claims, calls (see `execution.py`) and records in three moves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import alerts, choreography, events, machine
from .machine import Kind, SagaStatus
from .models import AuditEntry, Definition, Saga, SagaEvent, SagaStep, StepAttempt

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 20
# Choreography: the log entry of an event received (from outside, or the start event), before it is applied.
RECEIVED = "EventReceived"


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
    # Choreography sagas only (see _load_flow): the flow's state, and the events received, in order.
    flow: choreography.FlowState | None = field(init=False, default=None)
    received: list[tuple[str, dict]] = field(init=False, default_factory=list)

    @property
    def rules(self):
        """The rules that move this saga: `machine` (orchestration) or `choreography`, same interface."""
        return machine if self.flow is None else choreography

    @property
    def rule_state(self):
        return self.state if self.flow is None else self.flow

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

def start_saga(definition: Definition, context: dict, correlation_id: str, *,
               publish_start: bool = True) -> tuple[Saga, bool]:
    """Create a saga pinned to `definition` and enqueue its first step.

    Idempotent on (definition name, correlation_id): the same pair again returns the existing
    saga and False, starting nothing. A choreography starts by receiving its start event (unless
    `publish_start` is False: the events API records the event that came first itself).
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
                         timeout_seconds=s.timeout_seconds, compensate_on_failure=s.compensate_on_failure,
                         on=s.on, emits=s.emits, emits_on_failure=s.emits_on_failure, compensate_on=s.compensate_on)
                for s in definition_steps
            )
            if definition.mode != Definition.Mode.CHOREOGRAPHY:
                _after_commit(saga, machine.Work(Kind.ACTION, 0), number=1, delay=0)
            elif publish_start:
                loaded = _load(saga.pk)
                _receive(loaded, choreography.start_event(loaded.flow.flows),
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
    published = _published_data(loaded, transition, source="sagaboard", step=step.name, attempt=number,
                                data=outcome.output or {}, **({} if outcome.succeeded else {"error": outcome.error[:2000]}))
    _write(loaded, transition, now, step_fields={step.index: {}}, saga_fields=saga_fields, event_data=event_data,
           data_by_type=published)
    for due in _due(transition):
        _after_commit(loaded.saga, due, _attempts_made(loaded.steps[due.index], due.kind) + 1, delay)
    _apply_held(loaded, transition, now)


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
            transition = loaded.rules.act(loaded.rule_state, operator_action, in_flight=in_flight)
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
        transition = replace(transition, events=(operator_event, *transition.events))
        event_data = {"action": action, "reason": reason, "user": user.get_username(),
                      "status_before": status_before, "status_after": transition.state.status.value}
        _write(loaded, transition, now, step_fields=step_fields, saga_fields={"wake_at": None},
               event_data=event_data, data_by_type=_published_data(loaded, transition, source="operator",
                                                                   user=user.get_username(), reason=reason))
        AuditEntry.objects.create(saga=loaded.saga, user=user, username=user.get_username(), action=action,
                                  reason=reason, status_before=status_before,
                                  status_after=transition.state.status.value)
        for due in _due(transition):
            _after_commit(loaded.saga, due, _attempts_made(loaded.steps[due.index], due.kind) + 1, 0)
        _apply_held(loaded, transition, now)
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
        if due is None and _has_unapplied_event(saga_id):
            # Choreography: a received event whose publish task was lost.
            Saga.objects.filter(pk=saga_id).update(wake_at=now + timedelta(seconds=settings.SAGABOARD_STALL_SECONDS))
            _enqueue_publish(saga_id, "")
            stalled += 1
        elif due is not None:
            # Not again before another quiet spell, so a long queue does not fill up with copies.
            Saga.objects.filter(pk=saga_id).update(wake_at=now + timedelta(seconds=settings.SAGABOARD_STALL_SECONDS))
            _enqueue(saga_id, *due, 0)
            stalled += 1
    late = check_deadlines(now)
    if lost or stalled or late:
        log.warning("recovery: %d lost attempts settled, %d stalled sagas woken, %d flows late", lost, stalled, late)
    return {"lost_attempts": lost, "stalled_sagas": stalled, "late_flows": late}


def _has_unapplied_event(saga_id) -> bool:
    loaded = _load(saga_id)
    return loaded is not None and loaded.flow is not None and _applicable_received(loaded) is not None


def next_work(saga_id) -> tuple[machine.Work, int] | None:
    """The call an active saga waits for and the number its next attempt takes, or None."""
    loaded = _load(saga_id)
    if loaded is None:
        return None
    state = loaded.rule_state
    if state.status == SagaStatus.PENDING and loaded.flow is None:
        state = machine.start(state).state
    work = loaded.rules.expected_work(state)
    if work is None:
        return None
    return work, _attempts_made(loaded.steps[work.index], work.kind) + 1


# --- choreography: events received and published -------------------------------------------------
# An event travels through the worker queue: it is recorded as received (EventReceived, in the
# transaction that starts the saga or that the events API runs), and `tasks.publish_event` applies
# it. An event a step's outcome publishes is written in the same transaction as that outcome
# (durable with it, and one queue hop fewer); the calls it makes due are enqueued after commit.

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
                loaded = _load(saga.pk)
                if event_id and any(received.get("id") == event_id for _, received in loaded.received):
                    return loaded.saga, "duplicate"
                _receive(loaded, event_type, body, timezone.now())
        except Conflict:
            continue
        return loaded.saga, "started" if created else "recorded"
    raise Conflict(f"saga {saga.pk}: could not record {event_type} after {CONFLICT_RETRIES} tries")


def publish_event(saga_id, event_type: str = "") -> int:
    """Apply the received events that can be applied now, in flow order; returns how many were.

    An event that came early (before the event its emitter listens to) stays held until that one
    has been published, then is applied with it. Safe to repeat: an event is published once.
    """
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                loaded = _load(saga_id)
                if loaded is None or loaded.flow is None:
                    return 0
                return _apply_received(loaded, timezone.now())
        except Conflict:
            continue
    raise Conflict(f"saga {saga_id}: could not publish {event_type or 'its events'} after {CONFLICT_RETRIES} tries")


def flow_state(saga_id) -> choreography.FlowState | None:
    """A choreographed saga's flow state, for reading (None for an orchestration or an unknown saga)."""
    loaded = _load(saga_id)
    return None if loaded is None else loaded.flow


def _apply_received(loaded: _Loaded, now: datetime) -> int:
    applied = 0
    while waiting := _applicable_received(loaded):
        event_type, body = waiting
        transition = choreography.published(loaded.flow, event_type, observed=True)
        data = body.get("data")
        saga_fields = {"context": {**loaded.saga.context, **data}} if isinstance(data, dict) and data else {}
        _write(loaded, transition, now, saga_fields=saga_fields,
               event_data={"observed": True, "source": body.get("source", "")},
               data_by_type={event_type: {"correlation_id": loaded.saga.correlation_id, "source": body.get("source", ""),
                                          "id": body.get("id", ""), "data": data if isinstance(data, dict) else {}}})
        for due in _due(transition):
            _after_commit(loaded.saga, due, _attempts_made(loaded.steps[due.index], due.kind) + 1, 0)
        loaded.flow, loaded.state = transition.flow, transition.state
        applied += 1
    return applied


def _apply_held(loaded: _Loaded, transition, now: datetime) -> None:
    """Choreography: after `transition` was written, apply the held events that what it published unblocks."""
    if loaded.flow is not None and loaded.received:
        loaded.flow, loaded.state = transition.flow, transition.state
        _apply_received(loaded, now)


def _applicable_received(loaded: _Loaded) -> tuple[str, dict] | None:
    """The first received event not yet published that can be applied now."""
    return next(((event_type, body) for event_type, body in loaded.received
                 if event_type not in loaded.flow.published and choreography.applicable(loaded.flow, event_type)),
                None)


def _receive(loaded: _Loaded, event_type: str, body: dict, now: datetime) -> None:
    _write(loaded, choreography.Transition(loaded.flow, (machine.Event(RECEIVED),)), now,
           data_by_type={RECEIVED: {"type": event_type, **body}})
    loaded.received.append((event_type, body))
    saga_id = loaded.saga.pk
    transaction.on_commit(lambda: _enqueue_publish(saga_id, event_type))


def _load_flow(loaded: _Loaded) -> None:
    """A choreography's state: each step's flow, and from the event log what was published and received."""
    flows = tuple(choreography.Flow(s.on, s.emits, s.emits_on_failure, tuple(s.compensate_on or ()))
                  for s in loaded.steps)
    names = {e for f in flows for e in (f.on, f.emits, f.emits_on_failure, *f.compensate_on) if e}
    rows = SagaEvent.objects.filter(saga_id=loaded.saga.pk).filter(
        Q(type__in=names) | Q(type=RECEIVED) | Q(type="OperatorAction", data__action="compensate"),
    ).order_by("seq").values_list("type", "data")
    published, rollback = set(), False
    for event_type, data in rows:
        if event_type == RECEIVED:
            loaded.received.append((data.get("type", ""), data))
        elif event_type == "OperatorAction":
            rollback = True
        else:
            published.add(event_type)
    loaded.flow = choreography.FlowState(loaded.state, flows, frozenset(published), rollback)


def _published_data(loaded: _Loaded, transition, **data) -> dict[str, dict]:
    """Choreography: the data written with each business event that `transition` publishes."""
    if loaded.flow is None:
        return {}
    return {name: {"correlation_id": loaded.saga.correlation_id, **data}
            for name in transition.flow.published - loaded.flow.published}


def _due(transition) -> tuple[machine.Work, ...]:
    """The calls a transition makes due: at most one in orchestration, any number in choreography (fan-out)."""
    works = getattr(transition, "works", None)
    if works is not None:
        return works
    return () if transition.work is None else (transition.work,)


def _enqueue_publish(saga_id, event_type: str) -> None:
    from .tasks import publish_event as publish_task

    if settings.SAGABOARD_ENQUEUE:
        publish_task.delay(str(saga_id), event_type)


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
            loaded = _load(saga.pk)
            if loaded is None or loaded.saga.updated_at != saga.updated_at:
                continue  # it moved meanwhile
            waiting_for = choreography.expected_events(loaded.flow)
            try:
                _write(loaded, choreography.Transition(loaded.flow, (machine.Event("WaitedTooLong"),)), now,
                       data_by_type={"WaitedTooLong": {"deadline_seconds": deadline, "waiting_for": waiting_for,
                                                       "since": saga.updated_at.isoformat()}})
            except Conflict:
                continue
            alerts.waited_too_long(loaded.saga, deadline, waiting_for)
        raised += 1
    return raised


# --- writing -----------------------------------------------------------------------------------

def _load(saga_id) -> _Loaded | None:
    saga = Saga.objects.select_related("definition").filter(pk=saga_id).first()
    if saga is None:
        return None
    loaded = _Loaded(saga, list(saga.steps.order_by("index")))
    if saga.definition.mode == Definition.Mode.CHOREOGRAPHY:
        _load_flow(loaded)
    return loaded


def _attempt_counter(kind: Kind) -> str:
    return "action_attempts" if kind == Kind.ACTION else "compensation_attempts"


def _attempts_made(step: SagaStep, kind: Kind) -> int:
    return getattr(step, _attempt_counter(kind))


def _write(loaded: _Loaded, transition: machine.Transition, now: datetime, *,
           step_fields: dict[int, dict] | None = None, saga_fields: dict | None = None,
           event_data: dict | None = None, data_by_type: dict[str, dict] | None = None) -> None:
    """Write a transition: the saga (conditionally on its version), changed steps, events, alerts.

    `data_by_type` gives the data of events of those types (choreography's received and published events).
    """
    data_by_type = data_by_type or {}
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
                  data=data_by_type[event.type] if event.type in data_by_type else
                  event_data if event.step is not None or event.type == "OperatorAction" else {})
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
