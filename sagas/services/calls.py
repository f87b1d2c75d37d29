"""A worker's call of a step: claim it (an attempt row with a lease), then record its outcome.

`advance` records a call and claims the saga's next one in the same transaction when it is due
at once, so that a saga moving forward (or back) costs one transaction per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import machine
from ..machine import Kind, SagaStatus
from ..models import StepAttempt
from .flows import apply_held
from .sql import Batch, RowsMissed
from .state import (
    CONFLICT_RETRIES,
    Conflict,
    Loaded,
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
    started_at: datetime
    worker: str = ""
    # Orchestration: the saga as the transaction that claimed this call left it. Recording the
    # call starts from it instead of reading the saga back; every write is conditional on the
    # saga's version, so a copy gone stale costs a retry with a fresh read, never a wrong write.
    known: Loaded | None = field(default=None, compare=False, repr=False)


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


@dataclass(frozen=True)
class _Begun:
    """The next attempt of a call, to be written with its transition: the row gets its pk then."""

    transition: machine.Transition
    step_fields: dict[int, dict]
    saga_fields: dict[str, Any]
    event_data: dict
    attempt: StepAttempt
    call: Call

    def written(self, loaded: Loaded) -> Call:
        """The call, once the attempt row and `loaded` (as written with it) are in the database."""
        known = Loaded(loaded.saga, loaded.steps) if loaded.flow is None else None  # state as written
        return replace(self.call, attempt_id=self.attempt.pk, known=known)


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
                now = timezone.now()
                begun = _begin(loaded, loaded.rule_state, work, now, worker)
                if begun is None:
                    return None
                write(loaded, begun.transition, now, step_fields=begun.step_fields, saga_fields=begun.saga_fields,
                      event_data=begun.event_data, new_attempts=[begun.attempt])
                return begun.written(loaded)
        except Conflict:
            continue
        except IntegrityError:
            return None  # the same attempt was claimed by a concurrent delivery
    raise Conflict(f"saga {saga_id}: could not claim {work} after {CONFLICT_RETRIES} tries")


def _begin(loaded: Loaded, state, work: machine.Work, now: datetime, worker: str) -> _Begun | None:
    """The next attempt of `work` from `state` (its row, with a lease, not yet written); None if not allowed."""
    step = loaded.steps[work.index]
    number = attempts_made(step, work.kind) + 1
    prefix = ()
    if state.status == SagaStatus.PENDING and loaded.flow is None:
        # Orchestration starts with its first call; a choreography starts with its start event.
        started = machine.start(state)
        state, prefix = started.state, started.events
    try:
        transition = loaded.rules.claim(state, work)
    except machine.InvalidTransition:
        return None
    key = step.idempotency_key(work.kind)
    attempt = StepAttempt(
        saga_id=loaded.saga.pk, step=step, kind=work.kind, number=number, idempotency_key=key,
        started_at=now, worker=worker,
        lease_expires_at=now + timedelta(seconds=step.timeout_seconds + settings.SAGABOARD_LEASE_GRACE_SECONDS),
    )
    call = Call(
        attempt_id=0, saga_id=str(loaded.saga.pk), correlation_id=loaded.saga.correlation_id,
        step_name=step.name, kind=work.kind, index=work.index, number=number,
        handler=step.action if work.kind == Kind.ACTION else step.compensation,
        timeout_seconds=step.timeout_seconds, idempotency_key=key, context=loaded.saga.context,
        started_at=now, worker=worker,
    )
    return _Begun(
        transition=replace(transition, events=prefix + transition.events),
        step_fields={work.index: {attempt_counter(work.kind): number}},
        saga_fields={"started_at": loaded.saga.started_at or now, "wake_at": None},
        event_data={"attempt": number, "idempotency_key": key}, attempt=attempt, call=call,
    )


def record_outcome(attempt: StepAttempt | Call, outcome: Outcome) -> bool:
    """Write an attempt's outcome and move the saga on; False if the attempt was already settled.

    `attempt` is the claimed `Call` (from a worker) or the attempt row (from recovery). The row is
    settled with a conditional update first, so a late report from a worker that recovery has
    given up on changes nothing. The next call, if any, is enqueued after commit.
    """
    settled, _ = _record(attempt, outcome, continue_as=None)
    return settled


def advance(call: Call, outcome: Outcome, worker: str = "") -> Call | None:
    """Record a worker's call and, when the saga's next call is due at once, claim it in the same
    transaction and return it, for the same worker to make next.

    So a saga moving forward (or compensating) costs one transaction per step and no trip through
    the broker. A crash in the middle is no different from a crash in a call claimed from a
    message: the attempt's lease expires and `recover` settles it. When the next call is not due
    at once (a retry after its backoff, a choreography's fan-out) it is enqueued after commit, as
    by `record_outcome`, and None is returned.
    """
    _, next_call = _record(call, outcome, continue_as=worker)
    return next_call


def _record(attempt: StepAttempt | Call, outcome: Outcome, continue_as: str | None) -> tuple[bool, Call | None]:
    attempt_id = attempt.attempt_id if isinstance(attempt, Call) else attempt.pk
    known = attempt.known if isinstance(attempt, Call) else None
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                now = timezone.now()
                result = {
                    "status": StepAttempt.Status.SUCCEEDED if outcome.succeeded else StepAttempt.Status.FAILED,
                    "finished_at": now, "error": outcome.error[:10_000], "traceback": outcome.traceback[:50_000],
                    "output": outcome.output, "http_status": outcome.http_status,
                    "response_excerpt": outcome.response_excerpt[:10_000],
                }
                settling = Batch()
                settling.update(StepAttempt, {"pk": attempt_id, "status": StepAttempt.Status.RUNNING}, result,
                                conditional=True)
                if known is not None:
                    # The attempt is settled with the writes, in one round trip. Had anyone moved the
                    # saga since, the version check misses and everything is tried again from a read.
                    loaded, known = known, None
                    return True, _settle(loaded, attempt, result, outcome, now, continue_as, before=settling)
                # The attempt is settled first, conditionally, and the saga read in the same round trip.
                try:
                    loaded = load(attempt.saga_id, before=settling)
                except RowsMissed:
                    return False, None  # settled already (by recovery, or by a duplicate delivery)
                return True, _settle(loaded, attempt, result, outcome, now, continue_as)
        except Conflict:
            continue
    raise Conflict(f"attempt {attempt_id}: could not record its outcome after {CONFLICT_RETRIES} tries")


def _settle(loaded: Loaded, attempt: StepAttempt | Call, result: dict, outcome: Outcome, now: datetime,
            continue_as: str | None, before: Batch | None = None) -> Call | None:
    if isinstance(attempt, Call):
        step = loaded.steps[attempt.index]
        row = StepAttempt(pk=attempt.attempt_id, saga_id=loaded.saga.pk, step=step, kind=attempt.kind,
                          number=attempt.number, idempotency_key=attempt.idempotency_key,
                          started_at=attempt.started_at, worker=attempt.worker, **result)
    else:
        step, row = next(s for s in loaded.steps if s.pk == attempt.step_id), attempt
        for name, value in result.items():
            setattr(row, name, value)
    number = attempt.number
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
    step_fields: dict[int, dict] = {step.index: {}}
    event_data_each = [event_data] * len(transition.events)
    due = due_works(transition)
    begun = None
    if continue_as is not None and loaded.flow is None and len(due) == 1 and delay == 0:
        if "context" in saga_fields:
            loaded.saga.context = saga_fields["context"]  # the next call sees what this one returned
        begun = _begin(loaded, transition.state, due[0], now, continue_as)
    if begun is not None:
        # One write for both moves: what this call changed, and the next call beginning.
        transition = machine.Transition(begun.transition.state, transition.events + begun.transition.events)
        step_fields.update(begun.step_fields)
        saga_fields.update(begun.saga_fields)
        event_data_each += [begun.event_data] * len(begun.transition.events)
    write(loaded, transition, now, step_fields=step_fields, saga_fields=saga_fields, event_data=event_data_each,
          data_by_type=published, attempts=[row], new_attempts=[] if begun is None else [begun.attempt],
          before=before)
    if begun is not None:
        return begun.written(loaded)
    for work in due:
        after_commit(loaded.saga, work, attempts_made(loaded.steps[work.index], work.kind) + 1, delay)
    apply_held(loaded, transition, now)
    return None
