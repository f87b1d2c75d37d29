"""The choreography rules (sagas/choreography.py) without a database: one test per rule of
CONTRACT.md section 2 ("Choreography") as the engine applies it, for events published by steps
and for events reported from outside."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sagas.choreography import (
    Flow,
    FlowState,
    applicable,
    claim,
    expected_events,
    expected_works,
    flow_events,
    published,
    start,
    start_event,
)
from sagas.machine import (
    InvalidTransition,
    SagaState,
    SagaStatus,
    StepState,
    Work,
)
from tests.choreography_helpers import CHARGE, RESERVE, SHIP, A, C, demo, drive, run, statuses, types

# --- events move the flow -------------------------------------------------------------------------

def test_the_start_event_is_the_event_no_step_emits():
    assert start_event(demo().flows) == "OrderCreated"


def test_flow_events_lists_every_event_in_the_order_the_flow_expects_them():
    assert flow_events(demo().flows) == ["OrderCreated", "InventoryReserved", "PaymentProcessed", "PaymentFailed",
                                         "ShipmentCreated", "ShipmentFailed", "CustomerNotified"]


def test_starting_publishes_the_start_event_and_makes_its_listeners_due():
    transition = start(demo())
    assert transition.state.status == SagaStatus.RUNNING
    assert types(transition) == ["SagaStarted", "OrderCreated"]
    assert transition.works == (Work(A, RESERVE),)
    assert transition.flow.published == {"OrderCreated"}


def test_only_a_pending_saga_starts_and_only_with_its_start_event():
    with pytest.raises(InvalidTransition):
        start(demo(), "PaymentProcessed")
    with pytest.raises(InvalidTransition):
        start(start(demo()).flow)


def test_each_success_publishes_its_event_which_makes_the_next_step_due_until_completed():
    state, log = drive(demo())
    assert state.status == SagaStatus.COMPLETED
    assert statuses(state) == ["succeeded"] * 4
    business = [t for t in log if not t.startswith(("Saga", "Step"))]
    assert business == ["OrderCreated", "InventoryReserved", "PaymentProcessed", "ShipmentCreated", "CustomerNotified"]
    assert log[-1] == "SagaCompleted"


def test_a_payment_failure_publishes_payment_failed_which_releases_the_inventory():
    state, log = drive(demo(), fail={CHARGE})
    assert state.status == SagaStatus.COMPENSATED
    assert statuses(state) == ["compensated", "failed", "skipped", "skipped"]
    assert "PaymentFailed" in log and "PaymentProcessed" not in log
    assert log.index("PaymentFailed") < log.index("SagaCompensating") < log.index("StepCompensated")
    assert log[-1] == "SagaCompensated"


def test_a_shipment_failure_makes_both_compensations_due_at_once():
    state = start(demo()).flow
    state = run(state, Work(A, RESERVE)).flow
    state = run(state, Work(A, CHARGE)).flow
    transition = run(state, Work(A, SHIP), ok=False)
    assert transition.state.status == SagaStatus.COMPENSATING
    assert set(transition.works) == {Work(C, RESERVE), Work(C, CHARGE)}
    state = run(transition.flow, Work(C, CHARGE)).flow
    assert state.status == SagaStatus.COMPENSATING
    state = run(state, Work(C, RESERVE)).flow
    assert state.status == SagaStatus.COMPENSATED
    assert statuses(state) == ["compensated", "compensated", "failed", "skipped"]


def test_a_step_is_not_due_before_its_event_and_a_call_not_due_is_refused():
    state = start(demo()).flow
    assert expected_works(state) == (Work(A, RESERVE),)
    with pytest.raises(InvalidTransition):
        claim(state, Work(A, CHARGE))
    with pytest.raises(InvalidTransition):
        claim(state, Work(C, RESERVE))


def test_fan_out_makes_every_listener_due_and_the_saga_completes_when_all_are_done():
    steps = (StepState("a"), StepState("b"), StepState("c"))
    flows = (Flow("Go", "A"), Flow("Go", "B"), Flow("A", "C"))
    state = FlowState(SagaState(SagaStatus.PENDING, steps), flows)
    transition = start(state)
    assert transition.works == (Work(A, 0), Work(A, 1))
    state = run(transition.flow, Work(A, 1)).flow
    assert state.status == SagaStatus.RUNNING
    transition = run(state, Work(A, 0))
    assert transition.works == (Work(A, 2),)
    state = run(transition.flow, Work(A, 2)).flow
    assert state.status == SagaStatus.COMPLETED


def test_retries_repeat_the_same_call_then_the_final_failure_publishes_the_failure_event():
    state = run(start(demo()).flow, Work(A, RESERVE)).flow
    transition = run(state, Work(A, CHARGE), ok=False, retryable=True)
    assert transition.is_retry and transition.works == (Work(A, CHARGE),)
    assert types(transition) == ["StepRetrying"]
    transition = run(transition.flow, Work(A, CHARGE), ok=False, retryable=False)
    assert types(transition) == ["StepFailed", "PaymentFailed", "SagaCompensating"]


def test_an_event_is_published_once():
    state = start(demo()).flow
    assert published(state, "OrderCreated").events == ()


def test_a_final_failure_without_a_failure_event_rolls_back_everything_that_took_effect_in_reverse():
    state = start(demo()).flow
    state = run(state, Work(A, RESERVE)).flow
    state = run(state, Work(A, CHARGE)).flow
    flows = list(state.flows)
    flows[SHIP] = replace(flows[SHIP], emits_on_failure="")
    state = replace(state, flows=tuple(flows))
    transition = run(state, Work(A, SHIP), ok=False)
    assert transition.works == (Work(C, CHARGE),)  # one at a time, the last first
    transition = run(transition.flow, Work(C, CHARGE))
    assert transition.works == (Work(C, RESERVE),)
    state = run(transition.flow, Work(C, RESERVE)).flow
    assert state.status == SagaStatus.COMPENSATED


def test_a_retry_scheduled_before_a_roll_back_still_runs_once_and_decides_whether_the_step_is_undone():
    steps = (StepState("a", has_compensation=True), StepState("b", has_compensation=True))
    flows = (Flow("Go", "A"), Flow("Go", "B"))  # b fails without a failure event: everything rolls back
    state = start(FlowState(SagaState(SagaStatus.PENDING, steps), flows)).flow
    state = run(state, Work(A, 0), ok=False, retryable=True).flow  # a waits for its next attempt
    state = run(state, Work(A, 1), ok=False).flow
    assert state.status == SagaStatus.COMPENSATING
    assert expected_works(state) == (Work(A, 0),)
    transition = run(state, Work(A, 0), ok=False, retryable=True)
    assert not transition.is_retry  # no further attempt while rolling back
    assert transition.state.status == SagaStatus.COMPENSATED


def test_a_compensation_failing_for_good_fails_the_saga():
    state, log = drive(demo(), fail={CHARGE}, fail_comp={RESERVE})
    assert state.status == SagaStatus.FAILED
    assert statuses(state)[RESERVE] == "compensation_failed"
    assert log[-2:] == ["CompensationFailed", "SagaFailed"]


# --- events reported from outside ---------------------------------------------------------------

def test_an_observed_event_marks_its_emitter_done_and_moves_the_flow_on():
    state = start(demo()).flow
    transition = published(state, "InventoryReserved", observed=True)
    assert types(transition) == ["StepSucceeded", "InventoryReserved"]
    assert statuses(transition.flow)[RESERVE] == "succeeded"
    assert transition.works == (Work(A, CHARGE),)
    with pytest.raises(InvalidTransition):
        claim(transition.flow, Work(A, RESERVE))  # the outside service did it: it does not run here


def test_an_observed_failure_event_fails_its_emitter_and_triggers_compensations():
    state = run(start(demo()).flow, Work(A, RESERVE)).flow
    transition = published(state, "PaymentFailed", observed=True)
    assert statuses(transition.flow)[CHARGE] == "failed"
    assert transition.works == (Work(C, RESERVE),)


def test_an_event_that_came_early_is_not_applicable_until_its_emitter_was_triggered():
    state = demo()
    assert applicable(state, "OrderCreated") and not applicable(state, "InventoryReserved")
    with pytest.raises(InvalidTransition):
        published(state, "PaymentProcessed", observed=True)
    state = published(state, "OrderCreated", observed=True).flow
    assert not applicable(state, "PaymentProcessed")
    state = published(state, "InventoryReserved", observed=True).flow
    assert applicable(state, "PaymentProcessed")


def test_expected_events_name_what_the_flow_waits_for():
    assert expected_events(demo()) == ["OrderCreated"]
    state = run(start(demo()).flow, Work(A, RESERVE)).flow
    assert expected_events(state) == ["PaymentProcessed", "PaymentFailed"]
