"""The saga state machine: the rules of the contract as pure functions, no Django, no I/O.

A saga is seen here as a `SagaState`: its status, its `on_failure` policy and the state of each
step. Every function takes a state and an outcome and returns a `Transition`: the new state, the
events that the change publishes and the one piece of work (an action or a compensation of one
step) that must run next, if any. `sagas.services` loads the state from the database, asks this
module what happens, and writes the answer back in one transaction.

Invariants kept here (and checked by tests/test_machine_*.py):
- steps run forward one at a time, in order;
- compensation runs over exactly the steps whose action took effect (succeeded, resolved by hand,
  or failed with `compensate_on_failure`) and that have a compensation, in reverse order, each
  at most once;
- only the operator actions valid for a status are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class SagaStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    SKIPPED = "skipped"
    RESOLVED = "resolved"


class Kind(StrEnum):
    ACTION = "action"
    COMPENSATION = "compensation"


class OnFailure(StrEnum):
    COMPENSATE = "compensate"
    SUSPEND = "suspend"


class OperatorAction(StrEnum):
    RETRY = "retry"
    COMPENSATE = "compensate"
    RESOLVE = "resolve"


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})
# Where a saga waits for nothing but an operator or its end.
RESTING = TERMINAL | {SagaStatus.SUSPENDED, SagaStatus.FAILED}
ACTIVE = frozenset({SagaStatus.PENDING, SagaStatus.RUNNING, SagaStatus.COMPENSATING})

VALID_ACTIONS: dict[OperatorAction, frozenset[SagaStatus]] = {
    OperatorAction.RETRY: frozenset({SagaStatus.SUSPENDED, SagaStatus.FAILED}),
    OperatorAction.COMPENSATE: frozenset({SagaStatus.RUNNING, SagaStatus.SUSPENDED}),
    OperatorAction.RESOLVE: frozenset({SagaStatus.SUSPENDED, SagaStatus.FAILED}),
}


class InvalidTransition(Exception):
    """The outcome or action does not fit the saga's current state; nothing changes."""


@dataclass(frozen=True)
class StepState:
    name: str
    status: StepStatus = StepStatus.PENDING
    has_compensation: bool = False
    compensate_on_failure: bool = False
    # Which side an operator did by hand when status is RESOLVED: a step resolved forward took
    # effect (and is compensated later if the saga rolls back); one resolved backward is undone.
    resolved_kind: Kind | None = None

    @property
    def took_effect(self) -> bool:
        """True when the step's action may have changed the world and has not been undone."""
        if self.status == StepStatus.SUCCEEDED:
            return True
        if self.status == StepStatus.RESOLVED:
            return self.resolved_kind == Kind.ACTION
        return self.status == StepStatus.FAILED and self.compensate_on_failure

    @property
    def needs_compensation(self) -> bool:
        return self.has_compensation and self.took_effect


@dataclass(frozen=True)
class SagaState:
    status: SagaStatus
    steps: tuple[StepState, ...]
    on_failure: OnFailure = OnFailure.COMPENSATE

    def with_step(self, index: int, **changes) -> SagaState:
        steps = list(self.steps)
        steps[index] = replace(steps[index], **changes)
        return replace(self, steps=tuple(steps))

    def index_of(self, status: StepStatus) -> int | None:
        return next((i for i, step in enumerate(self.steps) if step.status == status), None)


@dataclass(frozen=True)
class Work:
    """One call to make: the action or the compensation of the step at `index`."""

    kind: Kind
    index: int


@dataclass(frozen=True)
class Event:
    type: str
    step: int | None = None


@dataclass(frozen=True)
class Transition:
    state: SagaState
    events: tuple[Event, ...] = ()
    work: Work | None = None
    # True when `work` repeats the call that just failed (a retry within max_attempts).
    is_retry: bool = False


def expected_work(state: SagaState) -> Work | None:
    """The call the saga waits for now, or None when it waits for nothing (or for an operator)."""
    if state.status == SagaStatus.RUNNING:
        index = state.index_of(StepStatus.RUNNING)
        if index is None:
            index = state.index_of(StepStatus.PENDING)
        return None if index is None else Work(Kind.ACTION, index)
    if state.status == SagaStatus.COMPENSATING:
        if state.index_of(StepStatus.RUNNING) is not None:
            return None  # an action still in flight: its outcome decides whether it is undone
        index = state.index_of(StepStatus.COMPENSATING)
        if index is None:
            index = _next_to_compensate(state)
        return None if index is None else Work(Kind.COMPENSATION, index)
    return None


def start(state: SagaState) -> Transition:
    if state.status != SagaStatus.PENDING:
        raise InvalidTransition(f"a {state.status} saga cannot start")
    running = replace(state, status=SagaStatus.RUNNING)
    return _forward(running, (Event("SagaStarted"),))


def claim(state: SagaState, work: Work) -> Transition:
    """The call `work` begins; refused unless it is exactly the call the saga waits for."""
    if expected_work(state) != work:
        raise InvalidTransition(f"{work} is not the call a {state.status} saga waits for")
    if work.kind == Kind.ACTION:
        return Transition(state.with_step(work.index, status=StepStatus.RUNNING), (Event("StepStarted", work.index),))
    changed = state.with_step(work.index, status=StepStatus.COMPENSATING)
    return Transition(changed, (Event("CompensationStarted", work.index),))


def succeeded(state: SagaState, work: Work) -> Transition:
    _check_in_flight(state, work)
    if work.kind == Kind.ACTION:
        changed = state.with_step(work.index, status=StepStatus.SUCCEEDED)
        events = (Event("StepSucceeded", work.index),)
        if changed.status == SagaStatus.COMPENSATING:  # an operator asked to roll back meanwhile
            return _compensate(changed, events)
        return _forward(changed, events)
    changed = state.with_step(work.index, status=StepStatus.COMPENSATED)
    return _compensate(changed, (Event("StepCompensated", work.index),))


def failed(state: SagaState, work: Work, retryable: bool) -> Transition:
    """An attempt failed; `retryable` says whether the policy allows another attempt."""
    _check_in_flight(state, work)
    going_on = state.status == (SagaStatus.RUNNING if work.kind == Kind.ACTION else SagaStatus.COMPENSATING)
    if work.kind == Kind.ACTION:
        if retryable and going_on:
            return Transition(state, (Event("StepRetrying", work.index),), work, is_retry=True)
        changed = state.with_step(work.index, status=StepStatus.FAILED)
        events = (Event("StepFailed", work.index),)
        if changed.status == SagaStatus.COMPENSATING:
            return _compensate(changed, events)
        if changed.on_failure == OnFailure.SUSPEND:
            return Transition(replace(changed, status=SagaStatus.SUSPENDED), events + (Event("SagaSuspended"),))
        return _begin_compensation(changed, events)
    if retryable:
        return Transition(state, (Event("CompensationRetrying", work.index),), work, is_retry=True)
    changed = state.with_step(work.index, status=StepStatus.COMPENSATION_FAILED)
    return Transition(replace(changed, status=SagaStatus.FAILED),
                      (Event("CompensationFailed", work.index), Event("SagaFailed")))


def act(state: SagaState, action: OperatorAction, in_flight: bool = False) -> Transition:
    """An operator action; `in_flight` says whether an action call is running right now."""
    if state.status not in VALID_ACTIONS[action]:
        allowed = ", ".join(sorted(VALID_ACTIONS[action]))
        raise InvalidTransition(f"'{action}' is not valid for a {state.status} saga (only when {allowed})")
    if action == OperatorAction.COMPENSATE:
        return _operator_compensate(state, in_flight)
    stuck_status = StepStatus.FAILED if state.status == SagaStatus.SUSPENDED else StepStatus.COMPENSATION_FAILED
    index = state.index_of(stuck_status)
    if index is None:
        raise InvalidTransition(f"the {state.status} saga has no {stuck_status} step to {action}")
    forward = state.status == SagaStatus.SUSPENDED
    if action == OperatorAction.RETRY:
        if forward:
            changed = replace(state.with_step(index, status=StepStatus.RUNNING), status=SagaStatus.RUNNING)
            return Transition(changed, (), Work(Kind.ACTION, index))
        changed = replace(state.with_step(index, status=StepStatus.COMPENSATING), status=SagaStatus.COMPENSATING)
        return Transition(changed, (), Work(Kind.COMPENSATION, index))
    kind = Kind.ACTION if forward else Kind.COMPENSATION
    changed = state.with_step(index, status=StepStatus.RESOLVED, resolved_kind=kind)
    events = (Event("StepResolved", index),)
    if forward:
        return _forward(replace(changed, status=SagaStatus.RUNNING), events)
    return _compensate(replace(changed, status=SagaStatus.COMPENSATING), events)


# --- the two directions ----------------------------------------------------------------------

def _forward(state: SagaState, events: tuple[Event, ...]) -> Transition:
    index = state.index_of(StepStatus.PENDING)
    if index is None:
        return Transition(replace(state, status=SagaStatus.COMPLETED), events + (Event("SagaCompleted"),))
    return Transition(state, events, Work(Kind.ACTION, index))


def _begin_compensation(state: SagaState, events: tuple[Event, ...]) -> Transition:
    never_reached = [i for i, s in enumerate(state.steps) if s.status == StepStatus.PENDING]
    steps = tuple(replace(s, status=StepStatus.SKIPPED) if i in never_reached else s for i, s in enumerate(state.steps))
    # Every status change has its event, so the timeline explains each step's status.
    skipped = tuple(Event("StepSkipped", i) for i in never_reached)
    return _compensate(replace(state, status=SagaStatus.COMPENSATING, steps=steps),
                       events + (Event("SagaCompensating"),) + skipped)


def _compensate(state: SagaState, events: tuple[Event, ...]) -> Transition:
    """Walk back from the top: skip what has nothing to undo, stop at the next compensation."""
    if state.index_of(StepStatus.RUNNING) is not None:
        return Transition(state, events)  # wait for the in-flight action's outcome
    index = _next_to_compensate(state)
    skipped = [i for i, s in enumerate(state.steps)
               if (index is None or i > index) and s.took_effect and not s.has_compensation]
    for i in skipped:
        state = state.with_step(i, status=StepStatus.SKIPPED)
    events += tuple(Event("StepSkipped", i) for i in reversed(skipped))
    if index is None:
        return Transition(replace(state, status=SagaStatus.COMPENSATED), events + (Event("SagaCompensated"),))
    return Transition(state, events, Work(Kind.COMPENSATION, index))


def _next_to_compensate(state: SagaState) -> int | None:
    return next((i for i in range(len(state.steps) - 1, -1, -1) if state.steps[i].needs_compensation), None)


def _operator_compensate(state: SagaState, in_flight: bool) -> Transition:
    running = state.index_of(StepStatus.RUNNING)
    events: tuple[Event, ...] = ()
    if running is not None and not in_flight:
        # Between two attempts: the last attempt failed and the next one will not be made.
        state = state.with_step(running, status=StepStatus.FAILED)
        events = (Event("StepFailed", running),)
    return _begin_compensation(state, events)


def _check_in_flight(state: SagaState, work: Work) -> None:
    wanted = StepStatus.RUNNING if work.kind == Kind.ACTION else StepStatus.COMPENSATING
    if state.steps[work.index].status != wanted:
        raise InvalidTransition(f"step {work.index} is {state.steps[work.index].status}, not {wanted}")
