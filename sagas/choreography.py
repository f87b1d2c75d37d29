"""The choreography rules: how events move a choreographed saga, as pure functions (no Django, no I/O).

The counterpart of `machine.py` for definitions with `mode: "choreography"`, with the same
interface (`start`, `claim`, `succeeded`, `failed`, `act`, `expected_work`) and the same types
(`SagaStatus`, `StepStatus`, `Kind`, `Work`, `Event`, `InvalidTransition`), so `sagas.services`
dispatches to one module or the other and writes the answer back the same way.

No step calls the next one here. A step's action is due when the event it listens to (`on`) has
been published for the saga; its success publishes `emits`, its final failure `emits_on_failure`;
its compensation is due when one of its `compensate_on` events has been published and its action
took effect. So several calls may be due at once (fan-out): a `Transition` lists every call the
change made due in `works`. Events are published at most once per saga (the flow has no cycles,
see `definitions.choreography_problems`).

The saga status is derived from what happened (CONTRACT.md section 2):
- `running` while actions are due or running, `compensating` while compensations are;
- at rest, `completed` when nothing failed, `compensated` when a failure was followed by the
  compensations it triggered;
- `failed` (sticky, an operator must act) while a compensation failed after its retries;
- `suspended` when an action fails for good and the definition says `on_failure: "suspend"`.

A final failure that publishes no event (no `emits_on_failure`), and an operator's `compensate`,
roll the saga back the orchestrated way: every step whose action took effect is compensated, in
reverse order, one at a time ("rolling back").

Events that services outside sagaboard report are "observed": `published(..., observed=True)`
marks the step that emits that event as done by them (succeeded, or failed for its
`emits_on_failure`), unless it is running here already. An event can be applied only after the
event its emitter listens to (`applicable`): services hold early events until then.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .machine import (
    VALID_ACTIONS,
    Event,
    InvalidTransition,
    Kind,
    OnFailure,
    OperatorAction,
    SagaState,
    SagaStatus,
    StepStatus,
    Work,
)

__all__ = ["Flow", "FlowState", "Transition", "InvalidTransition", "start", "published", "applicable", "claim",
           "succeeded", "failed", "act", "expected_work", "expected_works", "expected_events", "start_event",
           "flow_events"]

IN_FLIGHT = {StepStatus.RUNNING: Kind.ACTION, StepStatus.COMPENSATING: Kind.COMPENSATION}


@dataclass(frozen=True)
class Flow:
    """The choreography facts of one step: what it listens to, publishes, and is undone by."""

    on: str = ""
    emits: str = ""
    emits_on_failure: str = ""
    compensate_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowState:
    """A choreographed saga: the machine's state, each step's flow, and the events published so far."""

    saga: SagaState
    flows: tuple[Flow, ...]
    published: frozenset[str] = frozenset()
    # An operator asked to compensate: roll back everything that took effect, in reverse order.
    operator_rollback: bool = False

    @property
    def status(self) -> SagaStatus:
        return self.saga.status

    @property
    def rolling_back(self) -> bool:
        """Rolled back the orchestrated way: by an operator, or by a final failure that publishes nothing."""
        if self.operator_rollback:
            return True
        return self.saga.status != SagaStatus.SUSPENDED and any(
            step.status == StepStatus.FAILED and not flow.emits_on_failure
            for step, flow in zip(self.saga.steps, self.flows, strict=True))

    def with_step(self, index: int, **changes) -> FlowState:
        return replace(self, saga=self.saga.with_step(index, **changes))

    def with_status(self, status: SagaStatus) -> FlowState:
        return replace(self, saga=replace(self.saga, status=status))


@dataclass(frozen=True)
class Transition:
    """Like machine.Transition, with every call the change made due (`works`) instead of one."""

    flow: FlowState
    events: tuple[Event, ...] = ()
    works: tuple[Work, ...] = ()
    # True when `works` is the retry of the call that just failed.
    is_retry: bool = False

    @property
    def state(self) -> SagaState:
        return self.flow.saga

    @property
    def work(self) -> Work | None:
        return self.works[0] if self.works else None


def start_event(flows: tuple[Flow, ...] | list[Flow]) -> str:
    """The flow's start event: the one event that steps listen to and no step emits."""
    emitted = {e for f in flows for e in (f.emits, f.emits_on_failure) if e}
    return next((f.on for f in flows if f.on and f.on not in emitted), "")


def flow_events(flows: tuple[Flow, ...] | list[Flow]) -> list[str]:
    """Every event of the flow in the order the definition expects them: from the start event, each
    event followed by what its listeners publish (success first), breadth first."""
    order: list[str] = []
    queue = [start_event(flows)] if flows else []
    while queue:
        event = queue.pop(0)
        if not event or event in order:
            continue
        order.append(event)
        for flow in flows:
            if flow.on == event:
                queue += [flow.emits, flow.emits_on_failure]
    return order + [e for f in flows for e in (f.emits, f.emits_on_failure) if e and e not in order]


# --- what is due ---------------------------------------------------------------------------------

def expected_works(state: FlowState) -> tuple[Work, ...]:
    """Every call the saga waits for now: calls in flight (their next attempt) and calls events made due."""
    if state.status == SagaStatus.PENDING or state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
        return ()
    # Calls in flight stay due even when the saga turned back: a retry scheduled before is claimed, and
    # its outcome decides whether the step is undone (failed() makes no further retry while rolling back).
    in_flight = tuple(Work(IN_FLIGHT[s.status], i) for i, s in enumerate(state.saga.steps) if s.status in IN_FLIGHT)
    return tuple(sorted(in_flight + _triggered(state), key=lambda w: (w.index, w.kind)))


def expected_work(state: FlowState) -> Work | None:
    works = expected_works(state)
    return works[0] if works else None


def expected_events(state: FlowState) -> list[str]:
    """The events the flow waits for next: the start event, or what the due and running steps publish."""
    if state.status == SagaStatus.PENDING:
        return [start_event(state.flows)]
    wanted: list[str] = []
    for work in expected_works(state):
        flow = state.flows[work.index]
        if work.kind == Kind.ACTION:
            wanted += [e for e in (flow.emits, flow.emits_on_failure) if e and e not in state.published]
    return list(dict.fromkeys(wanted))


def applicable(state: FlowState, event_type: str) -> bool:
    """Whether `event_type` can be applied now: it is the start event, or its emitter has been triggered."""
    if event_type == start_event(state.flows):
        return True
    if state.status == SagaStatus.PENDING:
        return False
    return any(event_type in (flow.emits, flow.emits_on_failure) and flow.on in state.published
               for flow in state.flows)


# --- events --------------------------------------------------------------------------------------

def start(state: FlowState, event_type: str | None = None) -> Transition:
    """The flow's start event is published: the saga runs, and the steps listening to it are due."""
    first = start_event(state.flows)
    if event_type not in (None, first):
        raise InvalidTransition(f"{event_type!r} is not the start event of this flow ({first!r})")
    if state.status != SagaStatus.PENDING:
        raise InvalidTransition(f"a {state.status} saga cannot start")
    running = replace(state.with_status(SagaStatus.RUNNING), published=state.published | {first})
    return _settle(state, running, (Event("SagaStarted"), Event(first)) if first else (Event("SagaStarted"),))


def published(state: FlowState, event_type: str, observed: bool = False) -> Transition:
    """`event_type` is published for the saga; `observed` when a service outside sagaboard reported it.

    An event published before is not published again (nothing changes). An event that cannot be
    applied yet (see `applicable`) is refused.
    """
    if state.status == SagaStatus.PENDING:
        return start(state, event_type)
    if event_type in state.published:
        return Transition(state)
    if not applicable(state, event_type):
        raise InvalidTransition(f"{event_type!r} cannot be applied before the event its emitter listens to")
    changed, events = state, ()
    emitter = None
    if observed:
        emitter = next((i for i, (step, flow) in enumerate(zip(state.saga.steps, state.flows, strict=True))
                        if event_type in (flow.emits, flow.emits_on_failure) and flow.on in state.published
                        and step.status == StepStatus.PENDING), None)
        if emitter is not None:
            # The outside service did this step: it took effect there (or failed there).
            ok = state.flows[emitter].emits == event_type
            changed = state.with_step(emitter, status=StepStatus.SUCCEEDED if ok else StepStatus.FAILED)
            events = (Event("StepSucceeded" if ok else "StepFailed", emitter),)
    changed = replace(changed, published=changed.published | {event_type})
    return _settle(state, changed, events + (Event(event_type, emitter),))


# --- a call's life -------------------------------------------------------------------------------

def claim(state: FlowState, work: Work) -> Transition:
    """The call `work` begins; refused unless the saga waits for it."""
    if work not in expected_works(state):
        raise InvalidTransition(f"{work} is not a call a {state.status} saga waits for")
    if work.kind == Kind.ACTION:
        return Transition(state.with_step(work.index, status=StepStatus.RUNNING), (Event("StepStarted", work.index),))
    return Transition(state.with_step(work.index, status=StepStatus.COMPENSATING),
                      (Event("CompensationStarted", work.index),))


def succeeded(state: FlowState, work: Work) -> Transition:
    _check_in_flight(state, work)
    if work.kind == Kind.COMPENSATION:
        return _settle(state, state.with_step(work.index, status=StepStatus.COMPENSATED),
                       (Event("StepCompensated", work.index),))
    changed = state.with_step(work.index, status=StepStatus.SUCCEEDED)
    events = (Event("StepSucceeded", work.index),)
    emits = state.flows[work.index].emits
    if emits and emits not in state.published and not state.rolling_back:
        changed = replace(changed, published=changed.published | {emits})
        events += (Event(emits, work.index),)
    return _settle(state, changed, events)


def failed(state: FlowState, work: Work, retryable: bool) -> Transition:
    """An attempt failed; `retryable` says whether the policy allows another attempt."""
    _check_in_flight(state, work)
    if work.kind == Kind.COMPENSATION:
        if retryable:
            return Transition(state, (Event("CompensationRetrying", work.index),), (work,), is_retry=True)
        changed = state.with_step(work.index, status=StepStatus.COMPENSATION_FAILED)
        return _settle(state, changed, (Event("CompensationFailed", work.index),))
    if retryable and not state.rolling_back:
        return Transition(state, (Event("StepRetrying", work.index),), (work,), is_retry=True)
    changed = state.with_step(work.index, status=StepStatus.FAILED)
    events = (Event("StepFailed", work.index),)
    if state.rolling_back:
        return _settle(state, changed, events)
    if state.saga.on_failure == OnFailure.SUSPEND:
        if state.status == SagaStatus.SUSPENDED:
            return Transition(changed, events)
        return Transition(changed.with_status(SagaStatus.SUSPENDED), events + (Event("SagaSuspended"),))
    failure = state.flows[work.index].emits_on_failure
    if failure and failure not in state.published:
        changed = replace(changed, published=changed.published | {failure})
        events += (Event(failure, work.index),)
    return _settle(state, changed, events)


# --- operators -----------------------------------------------------------------------------------

def act(state: FlowState, action: OperatorAction, in_flight: bool = False) -> Transition:
    """An operator action, valid in the same statuses as in orchestration (machine.VALID_ACTIONS)."""
    if state.status not in VALID_ACTIONS[action]:
        allowed = ", ".join(sorted(VALID_ACTIONS[action]))
        raise InvalidTransition(f"'{action}' is not valid for a {state.status} saga (only when {allowed})")
    if action == OperatorAction.COMPENSATE:
        changed = replace(state, operator_rollback=True)
        running = changed.saga.index_of(StepStatus.RUNNING)
        events: tuple[Event, ...] = ()
        if running is not None and not in_flight:
            changed = changed.with_step(running, status=StepStatus.FAILED)  # between two attempts
            events = (Event("StepFailed", running),)  # every step status change has its event (as machine.py)
        return _settle(state, changed.with_status(SagaStatus.COMPENSATING), events)
    stuck_status = StepStatus.FAILED if state.status == SagaStatus.SUSPENDED else StepStatus.COMPENSATION_FAILED
    index = state.saga.index_of(stuck_status)
    if index is None:
        raise InvalidTransition(f"the {state.status} saga has no {stuck_status} step to {action}")
    forward = state.status == SagaStatus.SUSPENDED
    # Going on from a resting status: the saga's status is derived again from its steps.
    base = state.with_status(SagaStatus.RUNNING if forward else SagaStatus.COMPENSATING)
    if action == OperatorAction.RETRY:
        kind = Kind.ACTION if forward else Kind.COMPENSATION
        changed = base.with_step(index, status=StepStatus.RUNNING if forward else StepStatus.COMPENSATING)
        settled = _settle(state, changed, ())
        return replace(settled, works=(Work(kind, index),) + settled.works)
    kind = Kind.ACTION if forward else Kind.COMPENSATION
    changed = base.with_step(index, status=StepStatus.RESOLVED, resolved_kind=kind)
    events = (Event("StepResolved", index),)
    emits = state.flows[index].emits
    if forward and emits and emits not in state.published:
        # Done by hand means done: the flow carries on as if the step had succeeded.
        changed = replace(changed, published=changed.published | {emits})
        events += (Event(emits, index),)
    return _settle(state, changed, events)


# --- deriving the status -------------------------------------------------------------------------

def _triggered(state: FlowState) -> tuple[Work, ...]:
    """Calls that published events (or a roll-back) made due and that have not begun."""
    if state.status not in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
        return ()
    steps = state.saga.steps
    if state.rolling_back:
        if any(s.status in IN_FLIGHT for s in steps):
            return ()  # one compensation at a time, and after the in-flight action's outcome
        index = next((i for i in range(len(steps) - 1, -1, -1) if _undoable(steps[i])), None)
        return () if index is None else (Work(Kind.COMPENSATION, index),)
    works = []
    for i, (step, flow) in enumerate(zip(steps, state.flows, strict=True)):
        if step.status == StepStatus.PENDING and flow.on in state.published:
            works.append(Work(Kind.ACTION, i))
        elif _undoable(step) and any(e in state.published for e in flow.compensate_on):
            works.append(Work(Kind.COMPENSATION, i))
    return tuple(works)


def _undoable(step) -> bool:
    return step.needs_compensation and step.status not in (StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED,
                                                           StepStatus.COMPENSATING)


def _settle(before: FlowState, state: FlowState, events: tuple[Event, ...]) -> Transition:
    """Derive the saga's status from its steps, and list the calls this change made due."""
    steps = state.saga.steps
    status = state.status
    if any(s.status == StepStatus.COMPENSATION_FAILED for s in steps):
        status = SagaStatus.FAILED
    elif status != SagaStatus.SUSPENDED:
        probe = state.with_status(SagaStatus.RUNNING)
        due = _triggered(probe)
        if any(s.status in IN_FLIGHT for s in steps) or due:
            compensating = probe.rolling_back or any(w.kind == Kind.COMPENSATION for w in due) or any(
                s.status == StepStatus.COMPENSATING for s in steps)
            status = SagaStatus.COMPENSATING if compensating else SagaStatus.RUNNING
        else:
            skipped = [i for i, s in enumerate(steps) if s.status == StepStatus.PENDING]
            for i in skipped:
                state = state.with_step(i, status=StepStatus.SKIPPED)
            events += tuple(Event("StepSkipped", i) for i in skipped)
            turned_back = probe.rolling_back or any(
                s.status in (StepStatus.FAILED, StepStatus.COMPENSATED) or s.resolved_kind == Kind.COMPENSATION
                for s in steps)
            status = SagaStatus.COMPENSATED if turned_back else SagaStatus.COMPLETED
    events += _status_events(before.status, status)
    state = state.with_status(status)
    old = set(_triggered(before))
    works = tuple(w for w in _triggered(state) if w not in old)
    return Transition(state, events, works)


def _status_events(old: SagaStatus, new: SagaStatus) -> tuple[Event, ...]:
    if old == new:
        return ()
    return {
        SagaStatus.COMPENSATING: (Event("SagaCompensating"),),
        SagaStatus.COMPLETED: (Event("SagaCompleted"),),
        SagaStatus.COMPENSATED: (Event("SagaCompensated"),),
        SagaStatus.FAILED: (Event("SagaFailed"),),
        SagaStatus.SUSPENDED: (Event("SagaSuspended"),),
    }.get(new, ())


def _check_in_flight(state: FlowState, work: Work) -> None:
    wanted = StepStatus.RUNNING if work.kind == Kind.ACTION else StepStatus.COMPENSATING
    if state.saga.steps[work.index].status != wanted:
        raise InvalidTransition(f"step {work.index} is {state.saga.steps[work.index].status}, not {wanted}")
