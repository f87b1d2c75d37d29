"""The saga state machine, status by status: every call in a representative state of each saga
status gives the contract's transition or is refused (CONTRACT.md sections 2 and 4)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sagas.machine import (
    VALID_ACTIONS,
    InvalidTransition,
    OperatorAction,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
    Work,
    act,
    expected_work,
)
from tests.machine_helpers import (
    CD,
    CF,
    CING,
    COMPENSATE,
    RES,
    RESOLVE,
    RETRY,
    STATES,
    A,
    C,
    F,
    K,
    P,
    R,
    S,
    events,
    move,
    statuses,
    work,
)

# --- 1. every status x every call -----------------------------------------------------------------
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
