"""Helpers of the state machine tests (`tests/test_machine_*.py`): building saga states, playing calls
on them, the representative state of each saga status, and the shape each status allows."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sagas.machine import (
    Kind,
    OnFailure,
    OperatorAction,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
    Transition,
    Work,
    act,
    claim,
    expected_work,
    failed,
    start,
    succeeded,
)

A, C = Kind.ACTION, Kind.COMPENSATION
RETRY, COMPENSATE, RESOLVE = OperatorAction.RETRY, OperatorAction.COMPENSATE, OperatorAction.RESOLVE



# --- helpers -------------------------------------------------------------------------------------


def step(name: str, comp: bool = True, cof: bool = False) -> StepState:
    return StepState(name=name, has_compensation=comp, compensate_on_failure=cof)


def saga(*steps: StepState, on_failure: OnFailure = OnFailure.COMPENSATE) -> SagaState:
    return SagaState(status=SagaStatus.PENDING, steps=tuple(steps), on_failure=on_failure)


def three(on_failure: OnFailure = OnFailure.COMPENSATE) -> SagaState:
    """Three steps, each with a compensation, none compensated on its own failure."""
    return saga(step("a"), step("b"), step("c"), on_failure=on_failure)


def work(text: str) -> Work:
    """'A1' is the action of step 1, 'C0' the compensation of step 0."""
    return Work(A if text[0] == "A" else C, int(text[1:]))


def move(state: SagaState, text: str) -> Transition:
    """One call, written as in the tests' tables: 'start', 'claim A0', 'ok A0', 'retry-fail C1',
    'fail A2' (a failure with no attempt left), 'act compensate', 'act compensate in-flight'."""
    verb, _, rest = text.partition(" ")
    if verb == "start":
        return start(state)
    if verb == "claim":
        return claim(state, work(rest))
    if verb == "ok":
        return succeeded(state, work(rest))
    if verb == "retry-fail":
        return failed(state, work(rest), retryable=True)
    if verb == "fail":
        return failed(state, work(rest), retryable=False)
    if verb == "act":
        name, _, flight = rest.partition(" ")
        return act(state, OperatorAction(name), in_flight=flight == "in-flight")
    raise ValueError(text)


def play(state: SagaState, *moves: str) -> Transition:
    transition = Transition(state)
    for text in moves:
        transition = move(transition.state, text)
    return transition


def statuses(state: SagaState) -> tuple[str, ...]:
    return tuple(s.status.value for s in state.steps)


def events(transition: Transition) -> list[tuple[str, int | None]]:
    return [(e.type, e.step) for e in transition.events]


@dataclass
class Trace:
    """Plays the work each transition asks for; records every call and event on the way."""

    transition: Transition
    calls: list[str] = field(default_factory=list)
    log: list[tuple[str, int | None]] = field(default_factory=list)

    @property
    def state(self) -> SagaState:
        return self.transition.state

    def do(self, text: str) -> Trace:
        self.transition = move(self.state, text)
        self.calls.append(text)
        self.log += events(self.transition)
        return self

    def run(self, outcomes: dict[str, list[str]] | None = None, limit: int = 100) -> Trace:
        """Claim and settle each asked-for call: by the scripted outcomes for that call ('ok',
        'retry-fail', 'fail'), consumed in order, else 'ok'; stop when nothing is asked for."""
        outcomes = {key: list(value) for key, value in (outcomes or {}).items()}
        for _ in range(limit):
            asked = self.transition.work
            if asked is None:
                return self
            name = f"{asked.kind.value[0].upper()}{asked.index}"
            self.do(f"claim {name}")
            script = outcomes.get(name)
            self.do(f"{script.pop(0) if script else 'ok'} {name}")
        raise AssertionError(f"no rest after {limit} calls: {self.calls}")

    def claims(self, kind: Kind) -> list[int]:
        prefix = f"claim {kind.value[0].upper()}"
        return [int(c[len(prefix) :]) for c in self.calls if c.startswith(prefix)]


def begin(state: SagaState) -> Trace:
    return Trace(Transition(state)).do("start")




# A representative state of each saga status, reached through the machine itself. Steps a, b, c
# all have compensations and none is compensated on its own failure.
STATES: dict[str, Callable[[], SagaState]] = {
    "pending": lambda: three(),
    # b's action is running (in flight, or between two attempts: the machine cannot tell).
    "running": lambda: play(three(), "start", "claim A0", "ok A0", "claim A1").state,
    # b's action is asked for but not claimed yet.
    "running-queued": lambda: play(three(), "start", "claim A0", "ok A0").state,
    "suspended": lambda: play(three(OnFailure.SUSPEND), "start", "claim A0", "ok A0", "claim A1", "fail A1").state,
    # a's compensation is running.
    "compensating": lambda: play(three(), "start", "claim A0", "ok A0", "claim A1", "fail A1", "claim C0").state,
    # the operator asked to compensate while b's action was in flight.
    "compensating-waiting": lambda: (
        play(three(), "start", "claim A0", "ok A0", "claim A1", "act compensate in-flight").state
    ),
    "completed": lambda: play(three(), "start", "claim A0", "ok A0", "claim A1", "ok A1", "claim A2", "ok A2").state,
    "compensated": lambda: play(three(), "start", "claim A0", "ok A0", "claim A1", "fail A1", "claim C0", "ok C0").state,
    "failed": lambda: play(three(), "start", "claim A0", "ok A0", "claim A1", "fail A1", "claim C0", "fail C0").state,
}

P, R, S, F, K = "pending", "running", "succeeded", "failed", "skipped"
CING, CD, CF, RES = "compensating", "compensated", "compensation_failed", "resolved"

LETTER = {
    StepStatus.PENDING: "p",
    StepStatus.RUNNING: "r",
    StepStatus.SUCCEEDED: "s",
    StepStatus.FAILED: "f",
    StepStatus.COMPENSATING: "c",
    StepStatus.COMPENSATED: "d",
    StepStatus.COMPENSATION_FAILED: "x",
    StepStatus.SKIPPED: "k",
    StepStatus.RESOLVED: "v",
}
# The shape of the step statuses in each saga status, as a regular expression over LETTER.
SHAPES = {
    SagaStatus.PENDING: r"p*",
    SagaStatus.RUNNING: r"[sv]*(r|r?p+)",
    SagaStatus.SUSPENDED: r"[sv]*fp*",
    SagaStatus.COMPLETED: r"[sv]*",
    # Below the step being undone (or awaited): what went forward; above it: what is settled.
    SagaStatus.COMPENSATING: r"[sv]*[rcsfv][fvdk]*",
    SagaStatus.COMPENSATED: r"[fvdk]*",
    SagaStatus.FAILED: r"[sv]*x[fvdk]*",
}


def check_shape(state: SagaState) -> None:
    """The invariants every reachable state keeps; raises AssertionError with the state if not."""
    shape = "".join(LETTER[s.status] for s in state.steps)
    assert re.fullmatch(SHAPES[state.status], shape), (state.status, shape)
    for s in state.steps:
        assert (s.resolved_kind is not None) or s.status != StepStatus.RESOLVED, state
    # Compensation walks from the top: nothing above the step being undone (or broken, or awaited)
    # still needs it.
    frontier = next(
        (
            i
            for i, s in enumerate(state.steps)
            if s.status in (StepStatus.RUNNING, StepStatus.COMPENSATING, StepStatus.COMPENSATION_FAILED)
        ),
        None,
    )
    if frontier is None and state.status == SagaStatus.COMPENSATING:
        frontier = expected_work(state).index
    if frontier is not None and state.status in (SagaStatus.COMPENSATING, SagaStatus.FAILED):
        assert not any(s.needs_compensation for s in state.steps[frontier + 1 :]), (shape, state)
    running = state.index_of(StepStatus.RUNNING)
    if state.status == SagaStatus.COMPENSATING and running is not None:
        # An action that was in flight when the operator asked to compensate: nothing above it ran.
        assert all(s.status == StepStatus.SKIPPED for s in state.steps[running + 1 :]), shape
    if state.status == SagaStatus.COMPENSATED:
        assert not any(s.needs_compensation for s in state.steps), shape
    if state.status == SagaStatus.COMPLETED:
        assert all(s.status == StepStatus.SUCCEEDED or s.resolved_kind == Kind.ACTION for s in state.steps), shape
