"""The saga state machine (sagas/machine.py) against the contract, without a database.

Four layers, from the most explicit to the most thorough:

1. a matrix: every saga status (reached through the machine itself) times every call the machine
   offers, each answered by the contract's transition or by InvalidTransition;
2. one test per rule of CONTRACT.md section 2 and per operator action of section 4;
3. an exhaustive walk of every state reachable by every definition of up to three steps, checking
   the shape of each state, which calls it accepts, and that it can always come to rest;
4. hypothesis driving random sagas through random outcomes and operator actions, the way
   services.py and the workers drive the machine, checking the properties the contract promises.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import product

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagas.machine import (
    ACTIVE,
    RESTING,
    TERMINAL,
    VALID_ACTIONS,
    Event,
    InvalidTransition,
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


# --- 1. every status x every call -----------------------------------------------------------------

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

CALLS = (
    ["start"]
    + [f"claim {k}{i}" for k in "AC" for i in range(3)]
    + [f"{verb} {k}{i}" for verb in ("ok", "retry-fail", "fail") for k in "AC" for i in range(3)]
    + [f"act {a.value}{flight}" for a in OperatorAction for flight in ("", " in-flight")]
)


@dataclass(frozen=True)
class Expect:
    status: str
    steps: tuple[str, ...]
    events: tuple[tuple[str, int | None], ...] = ()
    work: str | None = None
    is_retry: bool = False


P, R, S, F, K = "pending", "running", "succeeded", "failed", "skipped"
CING, CD, CF, RES = "compensating", "compensated", "compensation_failed", "resolved"

# Every call not listed here must raise InvalidTransition.
EXPECTED: dict[tuple[str, str], Expect] = {
    ("pending", "start"): Expect("running", (P, P, P), (("SagaStarted", None),), "A0"),
    ("running", "claim A1"): Expect("running", (S, R, P), (("StepStarted", 1),)),
    ("running", "ok A1"): Expect("running", (S, S, P), (("StepSucceeded", 1),), "A2"),
    ("running", "retry-fail A1"): Expect("running", (S, R, P), (("StepRetrying", 1),), "A1", is_retry=True),
    ("running", "fail A1"): Expect(
        "compensating", (S, F, K), (("StepFailed", 1), ("SagaCompensating", None), ("StepSkipped", 2)), "C0"
    ),
    # Between two attempts the step counts as failed; in flight, its outcome is awaited.
    ("running", "act compensate"): Expect(
        "compensating", (S, F, K), (("StepFailed", 1), ("SagaCompensating", None), ("StepSkipped", 2)), "C0"
    ),
    ("running", "act compensate in-flight"): Expect(
        "compensating", (S, R, K), (("SagaCompensating", None), ("StepSkipped", 2))
    ),
    ("running-queued", "claim A1"): Expect("running", (S, R, P), (("StepStarted", 1),)),
    ("running-queued", "act compensate"): Expect(
        "compensating", (S, K, K), (("SagaCompensating", None), ("StepSkipped", 1), ("StepSkipped", 2)), "C0"
    ),
    ("running-queued", "act compensate in-flight"): Expect(
        "compensating", (S, K, K), (("SagaCompensating", None), ("StepSkipped", 1), ("StepSkipped", 2)), "C0"
    ),
    ("suspended", "act retry"): Expect("running", (S, R, P), (), "A1"),
    ("suspended", "act retry in-flight"): Expect("running", (S, R, P), (), "A1"),
    ("suspended", "act compensate"): Expect(
        "compensating", (S, F, K), (("SagaCompensating", None), ("StepSkipped", 2)), "C0"
    ),
    ("suspended", "act compensate in-flight"): Expect(
        "compensating", (S, F, K), (("SagaCompensating", None), ("StepSkipped", 2)), "C0"
    ),
    ("suspended", "act resolve"): Expect("running", (S, RES, P), (("StepResolved", 1),), "A2"),
    ("suspended", "act resolve in-flight"): Expect("running", (S, RES, P), (("StepResolved", 1),), "A2"),
    ("compensating", "claim C0"): Expect("compensating", (CING, F, K), (("CompensationStarted", 0),)),
    ("compensating", "ok C0"): Expect("compensated", (CD, F, K), (("StepCompensated", 0), ("SagaCompensated", None))),
    ("compensating", "retry-fail C0"): Expect(
        "compensating", (CING, F, K), (("CompensationRetrying", 0),), "C0", is_retry=True
    ),
    ("compensating", "fail C0"): Expect("failed", (CF, F, K), (("CompensationFailed", 0), ("SagaFailed", None))),
    # The in-flight action's outcome decides: undone if it succeeded, not if it failed.
    ("compensating-waiting", "ok A1"): Expect("compensating", (S, S, K), (("StepSucceeded", 1),), "C1"),
    ("compensating-waiting", "retry-fail A1"): Expect("compensating", (S, F, K), (("StepFailed", 1),), "C0"),
    ("compensating-waiting", "fail A1"): Expect("compensating", (S, F, K), (("StepFailed", 1),), "C0"),
    ("failed", "act retry"): Expect("compensating", (CING, F, K), (), "C0"),
    ("failed", "act retry in-flight"): Expect("compensating", (CING, F, K), (), "C0"),
    ("failed", "act resolve"): Expect("compensated", (RES, F, K), (("StepResolved", 0), ("SagaCompensated", None))),
    ("failed", "act resolve in-flight"): Expect(
        "compensated", (RES, F, K), (("StepResolved", 0), ("SagaCompensated", None))
    ),
}


def test_the_representative_states_cover_every_saga_status():
    reached = {name: builder().status for name, builder in STATES.items()}
    assert set(reached.values()) == set(SagaStatus)
    for name, status in reached.items():
        assert name.split("-")[0] == status.value


def test_every_expected_transition_names_a_known_state_and_call():
    assert {name for name, _ in EXPECTED} <= set(STATES)
    assert {call for _, call in EXPECTED} <= set(CALLS)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("state_name", list(STATES))
def test_each_call_in_each_status_gives_the_contract_transition_or_is_refused(state_name: str, call: str):
    state = STATES[state_name]()
    expected = EXPECTED.get((state_name, call))
    if expected is None:
        with pytest.raises(InvalidTransition):
            move(state, call)
        return
    transition = move(state, call)
    assert transition.state.status == expected.status
    assert statuses(transition.state) == expected.steps
    assert tuple(events(transition)) == expected.events
    assert transition.work == (None if expected.work is None else work(expected.work))
    assert transition.is_retry is expected.is_retry
    assert transition.state.on_failure == state.on_failure
    assert [s.name for s in transition.state.steps] == ["a", "b", "c"]


@pytest.mark.parametrize("in_flight", [False, True])
@pytest.mark.parametrize("action", list(OperatorAction))
@pytest.mark.parametrize("state_name", list(STATES))
def test_operator_actions_are_accepted_exactly_in_the_statuses_of_the_contract(
    state_name: str, action: OperatorAction, in_flight: bool
):
    contract = {RETRY: {"suspended", "failed"}, COMPENSATE: {"running", "suspended"}, RESOLVE: {"suspended", "failed"}}
    state = STATES[state_name]()
    assert {s.value for s in VALID_ACTIONS[action]} == contract[action]
    if state.status.value in contract[action]:
        assert act(state, action, in_flight=in_flight).state != state
    else:
        with pytest.raises(InvalidTransition, match=f"'{action.value}' is not valid for a {state.status.value} saga"):
            act(state, action, in_flight=in_flight)


@pytest.mark.parametrize("action", [RETRY, RESOLVE])
def test_retry_and_resolve_are_refused_when_no_step_is_stuck(action: OperatorAction):
    # Not reachable through the machine; a hand-edited row must not crash it or invent a step.
    for status in (SagaStatus.SUSPENDED, SagaStatus.FAILED):
        state = SagaState(status=status, steps=(StepState("a", StepStatus.SUCCEEDED, has_compensation=True),))
        with pytest.raises(InvalidTransition, match="has no"):
            act(state, action)


def test_expected_work_is_none_when_resting_pending_or_waiting_for_an_in_flight_action():
    for name in ("pending", "suspended", "completed", "compensated", "failed", "compensating-waiting"):
        assert expected_work(STATES[name]()) is None, name
    assert expected_work(STATES["running"]()) == Work(A, 1)
    assert expected_work(STATES["running-queued"]()) == Work(A, 1)
    assert expected_work(STATES["compensating"]()) == Work(C, 0)


# --- 2. the rules of CONTRACT.md section 2 and the operator actions of section 4 -----------------


def test_steps_run_forward_one_at_a_time_in_order():
    trace = begin(saga(step("a"), step("b"), step("c"), step("d", comp=False)))
    while trace.transition.work is not None:
        asked = trace.transition.work
        trace.do(f"claim A{asked.index}")
        assert [s.status for s in trace.state.steps].count(StepStatus.RUNNING) == 1
        assert all(s.status == StepStatus.SUCCEEDED for s in trace.state.steps[: asked.index])
        assert all(s.status == StepStatus.PENDING for s in trace.state.steps[asked.index + 1 :])
        trace.do(f"ok A{asked.index}")
    assert trace.claims(A) == [0, 1, 2, 3]
    assert trace.state.status == SagaStatus.COMPLETED
    assert statuses(trace.state) == (S, S, S, S)
    assert trace.log == [("SagaStarted", None)] + [
        (kind, i) for i in range(4) for kind in ("StepStarted", "StepSucceeded")
    ] + [("SagaCompleted", None)]


def test_a_saga_without_steps_completes_on_start():
    transition = start(saga())
    assert transition.state.status == SagaStatus.COMPLETED
    assert events(transition) == [("SagaStarted", None), ("SagaCompleted", None)]


def test_only_the_next_step_in_order_can_be_claimed():
    state = STATES["running-queued"]()
    for other in ("A0", "A2", "C0", "C1"):
        with pytest.raises(InvalidTransition):
            move(state, f"claim {other}")
    with pytest.raises(InvalidTransition):
        move(STATES["pending"](), "claim A0")  # services start the saga first


def test_outcomes_are_refused_for_a_call_that_is_not_running():
    state = STATES["running"]()
    for call in ("ok A0", "ok A2", "fail A0", "retry-fail A2", "ok C0", "fail C1"):
        with pytest.raises(InvalidTransition, match="not"):
            move(state, call)


def test_retries_within_max_attempts_repeat_the_same_call_then_go_on():
    trace = begin(three()).run({"A1": ["retry-fail", "retry-fail"]})
    assert trace.state.status == SagaStatus.COMPLETED
    assert trace.claims(A) == [0, 1, 1, 1, 2]
    assert trace.log.count(("StepRetrying", 1)) == 2


def test_a_failed_action_compensates_every_succeeded_step_in_reverse_order():
    trace = begin(saga(step("a"), step("b"), step("c"), step("d"), step("e"))).run({"A3": ["fail"]})
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [2, 1, 0]
    assert statuses(trace.state) == (CD, CD, CD, F, K)
    assert trace.log[trace.log.index(("StepFailed", 3)) :] == [
        ("StepFailed", 3),
        ("SagaCompensating", None),
        ("StepSkipped", 4),
        ("CompensationStarted", 2),
        ("StepCompensated", 2),
        ("CompensationStarted", 1),
        ("StepCompensated", 1),
        ("CompensationStarted", 0),
        ("StepCompensated", 0),
        ("SagaCompensated", None),
    ]


@pytest.mark.parametrize("cof", [False, True])
def test_the_failed_step_is_compensated_only_with_compensate_on_failure(cof: bool):
    trace = begin(saga(step("a"), step("b", cof=cof), step("c"))).run({"A1": ["retry-fail", "fail"]})
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == ([1, 0] if cof else [0])
    assert statuses(trace.state) == ((CD, CD, K) if cof else (CD, F, K))


def test_compensate_on_failure_without_a_compensation_skips_the_failed_step():
    trace = begin(saga(step("a"), step("b", comp=False, cof=True))).run({"A1": ["fail"]})
    assert trace.claims(C) == [0]
    assert statuses(trace.state) == (CD, K)
    assert ("StepSkipped", 1) in trace.log


def test_the_first_step_failing_compensates_nothing():
    trace = begin(three()).run({"A0": ["fail"]})
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == []
    assert statuses(trace.state) == (F, K, K)
    assert trace.log[-5:] == [
        ("StepFailed", 0),
        ("SagaCompensating", None),
        ("StepSkipped", 1),
        ("StepSkipped", 2),
        ("SagaCompensated", None),
    ]


def test_steps_without_a_compensation_are_skipped_in_reverse_order_during_compensation():
    steps = (step("a"), step("b", comp=False), step("c"), step("d", comp=False), step("e", comp=False), step("f"), step("g"))
    trace = begin(saga(*steps)).run({"A5": ["fail"]})
    assert trace.claims(C) == [2, 0]
    assert statuses(trace.state) == (CD, K, CD, K, K, F, K)
    tail = trace.log[trace.log.index(("SagaCompensating", None)) + 1 :]
    assert tail == [
        ("StepSkipped", 6),
        ("StepSkipped", 4),
        ("StepSkipped", 3),
        ("CompensationStarted", 2),
        ("StepCompensated", 2),
        ("StepSkipped", 1),
        ("CompensationStarted", 0),
        ("StepCompensated", 0),
        ("SagaCompensated", None),
    ]


def test_when_nothing_has_a_compensation_every_step_that_ran_is_skipped_from_the_top():
    trace = begin(saga(step("a", comp=False), step("b", comp=False), step("c"))).run({"A2": ["fail"]})
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == []
    assert statuses(trace.state) == (K, K, F)
    assert trace.log[-5:] == [
        ("StepFailed", 2),
        ("SagaCompensating", None),
        ("StepSkipped", 1),
        ("StepSkipped", 0),
        ("SagaCompensated", None),
    ]


def test_never_reached_steps_become_skipped():
    trace = begin(saga(step("a"), step("b"), step("c"), step("d"))).run({"A1": ["fail"]})
    assert statuses(trace.state)[2:] == (K, K)
    assert trace.claims(A) == [0, 1]


def test_on_failure_suspend_suspends_the_saga_for_an_operator():
    trace = begin(three(OnFailure.SUSPEND)).run({"A1": ["retry-fail", "fail"]})
    assert trace.state.status == SagaStatus.SUSPENDED
    assert statuses(trace.state) == (S, F, P)
    assert trace.log[-2:] == [("StepFailed", 1), ("SagaSuspended", None)]
    assert trace.claims(C) == []
    assert expected_work(trace.state) is None


def test_a_compensation_failing_for_good_fails_the_saga():
    trace = begin(three()).run({"A2": ["fail"], "C1": ["retry-fail", "fail"]})
    assert trace.state.status == SagaStatus.FAILED
    assert statuses(trace.state) == (S, CF, F)
    assert trace.log[-2:] == [("CompensationFailed", 1), ("SagaFailed", None)]
    assert trace.claims(C) == [1, 1]  # step a is not compensated past the broken step
    assert trace.state.status not in TERMINAL
    assert expected_work(trace.state) is None


def test_retry_of_a_failed_compensation_runs_that_compensation_again_and_carries_on():
    trace = begin(three()).run({"A2": ["fail"], "C1": ["fail"]})
    trace.do("act retry")
    assert trace.state.status == SagaStatus.COMPENSATING
    assert trace.transition.work == Work(C, 1)
    assert statuses(trace.state) == (S, CING, F)
    trace.run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [1, 1, 0]
    assert statuses(trace.state) == (CD, CD, F)


def test_resolve_in_failed_marks_the_step_resolved_and_carries_on_compensating():
    trace = begin(three()).run({"A2": ["fail"], "C1": ["fail"]})
    trace.do("act resolve").run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [1, 0]  # step b's compensation is not run again
    assert statuses(trace.state) == (CD, RES, F)
    assert trace.state.steps[1].resolved_kind == Kind.COMPENSATION
    assert ("StepResolved", 1) in trace.log


def test_retry_in_suspended_runs_the_failed_action_again_and_goes_forward():
    trace = begin(three(OnFailure.SUSPEND)).run({"A1": ["fail"]})
    trace.do("act retry")
    assert trace.state.status == SagaStatus.RUNNING
    assert trace.transition.work == Work(A, 1)
    trace.run()
    assert trace.state.status == SagaStatus.COMPLETED
    assert trace.claims(A) == [0, 1, 1, 2]


def test_resolve_in_suspended_marks_the_step_resolved_and_goes_forward():
    trace = begin(three(OnFailure.SUSPEND)).run({"A1": ["fail"]})
    trace.do("act resolve").run()
    assert trace.state.status == SagaStatus.COMPLETED
    assert statuses(trace.state) == (S, RES, S)
    assert trace.state.steps[1].resolved_kind == Kind.ACTION
    assert trace.claims(A) == [0, 1, 2]


def test_a_step_resolved_forward_is_compensated_when_a_later_step_fails():
    trace = begin(saga(step("a"), step("b"), step("c"), on_failure=OnFailure.SUSPEND)).run({"A1": ["fail"]})
    trace.do("act resolve").run({"A2": ["fail"]})
    trace.do("act compensate").run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [1, 0]
    assert statuses(trace.state) == (CD, CD, F)


def test_compensate_in_suspended_rolls_back_what_succeeded():
    trace = begin(saga(step("a"), step("b"), step("c", cof=True), step("d"), on_failure=OnFailure.SUSPEND))
    trace.run({"A2": ["fail"]}).do("act compensate").run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [2, 1, 0]
    assert statuses(trace.state) == (CD, CD, CD, K)


def test_compensate_while_an_action_is_in_flight_waits_for_it_and_undoes_it_if_it_succeeded():
    trace = begin(three()).do("claim A0").do("ok A0").do("claim A1").do("act compensate in-flight")
    assert trace.state.status == SagaStatus.COMPENSATING
    assert trace.transition.work is None
    assert expected_work(trace.state) is None
    assert statuses(trace.state) == (S, R, K)
    trace.do("ok A1")
    assert trace.transition.work == Work(C, 1)
    trace.run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [1, 0]
    assert statuses(trace.state) == (CD, CD, K)


@pytest.mark.parametrize("outcome", ["retry-fail", "fail"])
@pytest.mark.parametrize("cof", [False, True])
def test_compensate_while_an_action_is_in_flight_then_it_fails(outcome: str, cof: bool):
    trace = begin(saga(step("a"), step("b", cof=cof), step("c")))
    trace.do("claim A0").do("ok A0").do("claim A1").do("act compensate in-flight").do(f"{outcome} A1").run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == ([1, 0] if cof else [0])
    assert trace.claims(A) == [0, 1]  # a failed attempt is not retried once compensation began


@pytest.mark.parametrize("cof", [False, True])
def test_compensate_between_two_attempts_treats_the_step_as_failed(cof: bool):
    trace = begin(saga(step("a"), step("b", cof=cof), step("c")))
    trace.do("claim A0").do("ok A0").do("claim A1").do("retry-fail A1")
    retry = trace.transition.work
    assert retry == Work(A, 1)
    trace.do("act compensate")
    assert trace.state.steps[1].status == StepStatus.FAILED
    with pytest.raises(InvalidTransition):
        claim(trace.state, retry)  # the retry already queued is refused
    trace.run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == ([1, 0] if cof else [0])
    assert trace.claims(A) == [0, 1]


def test_compensate_before_the_next_step_is_claimed_refuses_that_call():
    trace = begin(three()).do("claim A0").do("ok A0")
    queued = trace.transition.work
    trace.do("act compensate")
    with pytest.raises(InvalidTransition):
        claim(trace.state, queued)
    trace.run()
    assert statuses(trace.state) == (CD, K, K)


def test_a_failed_saga_can_be_retried_again_after_the_compensation_fails_again():
    trace = begin(three()).run({"A2": ["fail"], "C1": ["fail", "fail"]})
    trace.do("act retry").run({"C1": ["fail"]})
    assert trace.state.status == SagaStatus.FAILED
    trace.do("act retry").run()
    assert trace.state.status == SagaStatus.COMPENSATED
    assert trace.claims(C) == [1, 1, 1, 0]


# --- 3. every state reachable by every definition of up to three steps -----------------------------

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


def definitions(max_steps: int) -> Iterator[SagaState]:
    for n in range(1, max_steps + 1):
        for flags in product(product([False, True], repeat=2), repeat=n):
            for on_failure in OnFailure:
                yield saga(*(step(f"s{i}", comp, cof) for i, (comp, cof) in enumerate(flags)), on_failure=on_failure)


Node = tuple[SagaState, Work | None]  # the state, and the call in flight (claimed, no outcome yet)


def successors(node: Node) -> Iterator[tuple[str, Node]]:
    """Every move the engine or an operator can make from `node` that the machine accepts."""
    state, flight = node
    if state.status == SagaStatus.PENDING:
        yield "start", (start(state).state, None)
        return
    asked = expected_work(state)
    if flight is None and asked is not None:
        yield f"claim {asked}", (claim(state, asked).state, asked)
    if flight is not None:
        yield "ok", (succeeded(state, flight).state, None)
        yield "retry-fail", (failed(state, flight, True).state, None)
        yield "fail", (failed(state, flight, False).state, None)
    for action in OperatorAction:
        if state.status in VALID_ACTIONS[action]:
            in_flight = flight is not None and flight.kind == A
            yield f"act {action}", (act(state, action, in_flight=in_flight).state, flight)


def reachable(definition: SagaState) -> dict[Node, list[str]]:
    """Every node reachable from a new saga, with one path of moves that reaches it."""
    seen: dict[Node, list[str]] = {(definition, None): []}
    queue = deque(seen)
    while queue:
        node = queue.popleft()
        for label, nxt in successors(node):
            if nxt not in seen:
                seen[nxt] = seen[node] + [label]
                queue.append(nxt)
    return seen


def check_node(node: Node, path: list[str]) -> None:
    state, flight = node
    check_shape(state)
    asked = expected_work(state)
    assert sum(s.status in (StepStatus.RUNNING, StepStatus.COMPENSATING) for s in state.steps) <= 1, path
    if state.status in RESTING:
        assert flight is None and asked is None, path
    if flight is not None:
        # A call in flight: the saga waits for its outcome and asks for nothing else.
        wanted = StepStatus.RUNNING if flight.kind == A else StepStatus.COMPENSATING
        assert state.steps[flight.index].status == wanted, path
        assert asked in (None, flight), path
    elif state.status in ACTIVE - {SagaStatus.PENDING}:
        assert asked is not None, f"an active saga waits for nothing: {path}"
    # Every call but the expected one is refused.
    for kind, index in product(Kind, range(len(state.steps))):
        if Work(kind, index) != asked:
            with pytest.raises(InvalidTransition):
                claim(state, Work(kind, index))
    # Outcomes only for a call that is running.
    for kind, index in product(Kind, range(len(state.steps))):
        wanted = StepStatus.RUNNING if kind == A else StepStatus.COMPENSATING
        if state.steps[index].status != wanted:
            for outcome in (
                lambda w: succeeded(state, w),
                lambda w: failed(state, w, True),
                lambda w: failed(state, w, False),
            ):
                with pytest.raises(InvalidTransition):
                    outcome(Work(kind, index))
    # Operator actions: refused outside the contract's statuses, accepted (never crashing) inside.
    for action, in_flight in product(OperatorAction, [False, True]):
        if state.status in VALID_ACTIONS[action]:
            act(state, action, in_flight=in_flight and flight is not None)
        else:
            with pytest.raises(InvalidTransition):
                act(state, action, in_flight=in_flight)
    # Whatever happened, the saga comes to rest if every call from now on succeeds.
    for _ in range(4 * len(state.steps) + 2):
        if state.status in RESTING:
            break
        if state.status == SagaStatus.PENDING:
            state = start(state).state
        elif flight is not None:
            state, flight = succeeded(state, flight).state, None
        else:
            asked = expected_work(state)
            state, flight = claim(state, asked).state, asked
    assert state.status in RESTING, path


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_reachable_state_keeps_its_shape_and_can_come_to_rest(n: int):
    visited = 0
    statuses_seen: set[SagaStatus] = set()
    for definition in definitions(n):
        if len(definition.steps) != n:
            continue
        for node, path in reachable(definition).items():
            check_node(node, path)
            statuses_seen.add(node[0].status)
            visited += 1
    assert statuses_seen == set(SagaStatus)
    assert visited >= {1: 90, 2: 1000, 3: 10000}[n]  # the walk really went everywhere


# --- 4. random sagas driven like the engine drives them (hypothesis) ------------------------------


@dataclass(frozen=True)
class Spec:
    has_compensation: bool
    compensate_on_failure: bool
    max_attempts: int


@dataclass
class Driver:
    """Drives one saga as services.py and the workers do, and checks the contract on each move.

    It plays exactly the call each transition asks for: claims it, then reports an outcome;
    `retryable` is decided as services decides it (not permanent and attempts left in the round;
    an operator's retry starts a new round). `in_flight` for an operator action is True while
    an action is claimed and its outcome not yet reported.
    """

    specs: list[Spec]
    state: SagaState
    queued: Work | None = None  # asked for by the last transition, not claimed yet
    flight: Work | None = None  # claimed, outcome not reported yet
    round_attempts: dict[Work, int] = field(default_factory=dict)
    took_effect: set[int] = field(default_factory=set)  # the model's own account, not the machine's
    resolved_backward: set[int] = field(default_factory=set)
    action_claims: list[int] = field(default_factory=list)
    compensation_claims: list[int] = field(default_factory=list)
    compensated: list[int] = field(default_factory=list)
    moves_since_operator: int = 0
    failed_for_good: int | None = None  # the step whose action failed with no attempt left

    @property
    def bound(self) -> int:
        # Each call takes a claim and an outcome per attempt, forward and backward.
        return 4 * sum(spec.max_attempts for spec in self.specs) + 4

    def apply(self, transition: Transition, claimed: Work | None = None) -> None:
        before, after = self.state, transition.state
        check_shape(after)
        self.state = after
        self.moves_since_operator += 1
        assert self.moves_since_operator <= self.bound, "the saga does not come to rest"
        if claimed is None:
            self.queued = transition.work
        else:
            assert transition.work is None
            self.queued = None
        if after.status in ACTIVE:
            # The saga waits for exactly the call the last transition asked for.
            assert expected_work(after) == (claimed or transition.work)
        else:
            assert transition.work is None and expected_work(after) is None
        if after.status != before.status and after.status in RESTING:
            announce = {
                SagaStatus.COMPLETED: "SagaCompleted",
                SagaStatus.COMPENSATED: "SagaCompensated",
                SagaStatus.SUSPENDED: "SagaSuspended",
                SagaStatus.FAILED: "SagaFailed",
            }
            assert transition.events[-1] == Event(announce[after.status])
        # Every step that becomes skipped is announced once: the never-reached ones when compensation
        # begins, then those without anything to undo from the top down.
        skipped = [e.step for e in transition.events if e.type == "StepSkipped"]
        became = [
            i
            for i, (old, new) in enumerate(zip(before.steps, after.steps, strict=True))
            if old.status != StepStatus.SKIPPED and new.status == StepStatus.SKIPPED
        ]
        assert sorted(skipped) == became
        walked = [i for i in skipped if before.steps[i].status != StepStatus.PENDING]
        assert walked == sorted(walked, reverse=True)
        if after.status == SagaStatus.FAILED and before.status != SagaStatus.FAILED:
            broken = after.index_of(StepStatus.COMPENSATION_FAILED)
            assert transition.events[-2:] == (Event("CompensationFailed", broken), Event("SagaFailed"))
        self.check_outcome()

    def check_outcome(self) -> None:
        state = self.state
        owed = {i for i in self.took_effect if self.specs[i].has_compensation}
        if state.status == SagaStatus.COMPLETED:
            assert all(
                s.status == StepStatus.SUCCEEDED or (s.status == StepStatus.RESOLVED and s.resolved_kind == A)
                for s in state.steps
            )
            assert self.compensation_claims == []
        if state.status == SagaStatus.COMPENSATED:
            assert not any(s.status == StepStatus.SUCCEEDED and s.has_compensation for s in state.steps)
            assert not any(s.needs_compensation for s in state.steps)
            # Exactly what took effect and can be undone was undone (or undone by hand).
            assert set(self.compensated) | self.resolved_backward == owed
            assert all(
                state.steps[i].status == StepStatus.SKIPPED for i in self.took_effect if not self.specs[i].has_compensation
            )

    def start(self) -> None:
        self.apply(start(self.state))

    def claim_queued(self) -> None:
        asked = self.queued
        assert asked is not None, "an active saga with nothing in flight asks for nothing"
        transition = claim(self.state, asked)
        self.round_attempts[asked] = self.round_attempts.get(asked, 0) + 1
        if asked.kind == A:
            # Forward, one step at a time, in order; never again once compensation began.
            assert not self.compensation_claims
            assert all(s.status in (StepStatus.SUCCEEDED, StepStatus.RESOLVED) for s in self.state.steps[: asked.index])
            previous = self.action_claims[-1] if self.action_claims else -1
            assert asked.index in (previous, previous + 1)
            self.action_claims.append(asked.index)
        else:
            # Only for a step that took effect and has a compensation; from the top down.
            assert asked.index in self.took_effect and self.specs[asked.index].has_compensation
            assert asked.index not in self.compensated and asked.index not in self.resolved_backward
            if self.compensation_claims:
                assert asked.index <= self.compensation_claims[-1]
            self.compensation_claims.append(asked.index)
        self.flight = asked
        self.apply(transition, claimed=asked)

    def report(self, outcome: str) -> None:
        done, self.flight = self.flight, None
        spec = self.specs[done.index]
        if outcome == "success":
            if done.kind == A:
                self.took_effect.add(done.index)
            else:
                self.compensated.append(done.index)
                assert self.compensated == sorted(self.compensated, reverse=True)
                assert len(set(self.compensated)) == len(self.compensated)
            self.apply(succeeded(self.state, done))
            return
        if done.kind == A and spec.compensate_on_failure:
            self.took_effect.add(done.index)  # a failed attempt may have done part of its work
        retryable = outcome == "failure" and self.round_attempts[done] < spec.max_attempts
        if done.kind == A and not retryable:
            self.failed_for_good = done.index
        going_on = self.state.status == (SagaStatus.RUNNING if done.kind == A else SagaStatus.COMPENSATING)
        transition = failed(self.state, done, retryable)
        # Retried while attempts are left, unless the saga turned back meanwhile; else given up.
        assert transition.is_retry is (retryable and going_on)
        if transition.is_retry:
            assert transition.work == done and transition.state == self.state
        self.apply(transition)

    def operate(self, action: OperatorAction) -> None:
        state = self.state
        in_flight = self.flight is not None and self.flight.kind == A
        if state.status not in VALID_ACTIONS[action]:
            with pytest.raises(InvalidTransition):
                act(state, action, in_flight=in_flight)
            return
        stale = self.queued
        stuck = state.index_of(StepStatus.FAILED if state.status == SagaStatus.SUSPENDED else StepStatus.COMPENSATION_FAILED)
        transition = act(state, action, in_flight=in_flight)
        self.moves_since_operator = 0
        if action == RESOLVE:
            assert transition.state.steps[stuck].status == StepStatus.RESOLVED
            (self.took_effect if state.status == SagaStatus.SUSPENDED else self.resolved_backward).add(stuck)
        if action == RETRY:
            assert transition.work is not None and transition.work.index == stuck
            self.round_attempts[transition.work] = 0
        self.apply(transition)
        if stale is not None and stale != self.queued:
            with pytest.raises(InvalidTransition):
                claim(self.state, stale)  # a call queued before the operator acted is refused


@st.composite
def specs(draw: st.DrawFn) -> tuple[list[Spec], OnFailure]:
    n = draw(st.integers(1, 6))
    steps = [Spec(draw(st.booleans()), draw(st.booleans()), draw(st.integers(1, 3))) for _ in range(n)]
    return steps, draw(st.sampled_from(list(OnFailure)))


# Actions mostly succeed, so that sagas get far before they fail; compensations fail often, so
# that failed sagas (and the operator actions on them) come up.
OUTCOMES = {
    A: st.sampled_from(["success", "success", "success", "failure", "permanent"]),
    C: st.sampled_from(["success", "failure", "permanent"]),
}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition=specs(), data=st.data())
def test_random_sagas_keep_the_contract_under_random_outcomes_and_operator_actions(definition, data):
    steps, on_failure = definition
    driver = Driver(
        steps,
        saga(
            *(step(f"s{i}", s.has_compensation, s.compensate_on_failure) for i, s in enumerate(steps)), on_failure=on_failure
        ),
    )
    driver.start()
    operator_budget = data.draw(st.integers(0, 5), label="operator actions")
    while True:
        resting = driver.state.status in RESTING
        if resting and not operator_budget:
            break
        # Operators act on every resting saga while they have actions left, now and then on active ones.
        options = (["operator"] if resting else ["work"] * 4) + (["operator"] if operator_budget else [])
        choice = data.draw(st.sampled_from(options), label="move")
        if choice == "operator":
            operator_budget -= 1
            driver.operate(data.draw(st.sampled_from(list(OperatorAction)), label="action"))
        elif driver.flight is not None:
            driver.report(data.draw(OUTCOMES[driver.flight.kind], label="outcome"))
        else:
            driver.claim_queued()
    # Without operator actions left, every saga comes to rest.
    assert driver.state.status in RESTING
    assert driver.flight is None and expected_work(driver.state) is None


@settings(max_examples=300, deadline=None)
@given(definition=specs(), data=st.data())
def test_random_sagas_without_operators_end_where_the_contract_says(definition, data):
    steps, on_failure = definition
    driver = Driver(
        steps,
        saga(
            *(step(f"s{i}", s.has_compensation, s.compensate_on_failure) for i, s in enumerate(steps)), on_failure=on_failure
        ),
    )
    driver.start()
    while driver.state.status not in RESTING:
        if driver.flight is not None:
            driver.report(data.draw(OUTCOMES[driver.flight.kind], label="outcome"))
        else:
            driver.claim_queued()
    if driver.failed_for_good is None:
        assert driver.state.status == SagaStatus.COMPLETED
        assert driver.action_claims[-1] == len(steps) - 1
    elif on_failure == OnFailure.SUSPEND:
        assert driver.state.status == SagaStatus.SUSPENDED
        assert driver.state.steps[driver.failed_for_good].status == StepStatus.FAILED
        assert driver.compensation_claims == []
    else:
        assert driver.state.status in (SagaStatus.COMPENSATED, SagaStatus.FAILED)
        # Every step after the failed one was never reached.
        assert driver.action_claims[-1] == driver.failed_for_good
        assert all(s.status == StepStatus.SKIPPED for s in driver.state.steps[driver.failed_for_good + 1 :])
