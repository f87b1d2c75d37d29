"""The choreography rules under operator actions: the contract's validity table, and each action's
effect on a flow."""

from __future__ import annotations

import pytest

from sagas.choreography import (
    Transition,
    act,
    claim,
    expected_works,
    start,
    succeeded,
)
from sagas.machine import (
    VALID_ACTIONS,
    InvalidTransition,
    OperatorAction,
    SagaStatus,
    Work,
)
from tests.choreography_helpers import CHARGE, RESERVE, SHIP, A, C, demo, reach, run, statuses, types


# --- operators ------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [s.value for s in SagaStatus])
def test_reach_gives_every_status(status: str):
    assert reach(status).status == status


@pytest.mark.parametrize("action", list(OperatorAction))
@pytest.mark.parametrize("status", [s.value for s in SagaStatus])
def test_operator_actions_are_accepted_exactly_in_the_statuses_of_the_contract(status: str, action: OperatorAction):
    state = reach(status)
    if state.status in VALID_ACTIONS[action]:
        assert isinstance(act(state, action), Transition)
    else:
        with pytest.raises(InvalidTransition):
            act(state, action)


def test_suspend_then_retry_runs_the_failed_action_again_and_goes_on():
    transition = act(reach("suspended"), OperatorAction.RETRY)
    assert transition.state.status == SagaStatus.RUNNING
    assert transition.works == (Work(A, CHARGE),)
    state = run(transition.flow, Work(A, CHARGE)).flow
    assert expected_works(state) == (Work(A, SHIP),)


def test_suspend_then_resolve_publishes_the_steps_event_as_if_it_had_succeeded():
    transition = act(reach("suspended"), OperatorAction.RESOLVE)
    assert types(transition) == ["StepResolved", "PaymentProcessed"]
    assert transition.works == (Work(A, SHIP),)


def test_compensate_rolls_back_what_took_effect_in_reverse_one_at_a_time():
    state = run(run(start(demo()).flow, Work(A, RESERVE)).flow, Work(A, CHARGE)).flow
    transition = act(state, OperatorAction.COMPENSATE)
    assert transition.state.status == SagaStatus.COMPENSATING
    assert transition.works == (Work(C, CHARGE),)
    with pytest.raises(InvalidTransition):
        claim(transition.flow, Work(A, SHIP))  # nothing goes forward any more


def test_compensate_while_an_action_is_in_flight_waits_for_its_outcome_and_undoes_it():
    state = claim(run(start(demo()).flow, Work(A, RESERVE)).flow, Work(A, CHARGE)).flow
    transition = act(state, OperatorAction.COMPENSATE, in_flight=True)
    assert transition.works == ()
    transition = succeeded(transition.flow, Work(A, CHARGE))
    assert "PaymentProcessed" not in types(transition)
    assert transition.works == (Work(C, CHARGE),)


def test_retry_of_a_failed_compensation_runs_it_again_and_finishes_compensated():
    transition = act(reach("failed"), OperatorAction.RETRY)
    assert transition.state.status == SagaStatus.COMPENSATING and transition.works == (Work(C, RESERVE),)
    assert run(transition.flow, Work(C, RESERVE)).state.status == SagaStatus.COMPENSATED


def test_resolve_of_a_failed_compensation_finishes_compensated():
    transition = act(reach("failed"), OperatorAction.RESOLVE)
    assert transition.state.status == SagaStatus.COMPENSATED
    assert statuses(transition.flow)[RESERVE] == "resolved"
