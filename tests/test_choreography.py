"""The choreography rules (sagas/choreography.py) without a database.

One test per rule of CONTRACT.md section 2 ("Choreography") as the engine applies it, the
operator actions against the contract's validity table, then hypothesis driving random flows
(random event graphs, outcomes and operator actions) the way services.py and the workers do,
checking what the contract promises: every call is due only after its event, each event is
published once, compensations run only for steps that took effect, and a saga left alone always
comes to rest in the status its history calls for.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagas.choreography import (
    Flow,
    FlowState,
    Transition,
    act,
    applicable,
    claim,
    expected_events,
    expected_work,
    expected_works,
    failed,
    flow_events,
    published,
    start,
    start_event,
    succeeded,
)
from sagas.machine import (
    RESTING,
    VALID_ACTIONS,
    InvalidTransition,
    Kind,
    OnFailure,
    OperatorAction,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
    Work,
)

A, C = Kind.ACTION, Kind.COMPENSATION
RESERVE, CHARGE, SHIP, NOTIFY = range(4)


def demo(on_failure: OnFailure = OnFailure.COMPENSATE) -> FlowState:
    """The demo's order-fulfilment-choreography."""
    steps = (StepState("reserve_inventory", has_compensation=True), StepState("charge_payment", has_compensation=True),
             StepState("create_shipment", has_compensation=True), StepState("send_notification"))
    flows = (Flow("OrderCreated", "InventoryReserved", "", ("PaymentFailed", "ShipmentFailed")),
             Flow("InventoryReserved", "PaymentProcessed", "PaymentFailed", ("ShipmentFailed",)),
             Flow("PaymentProcessed", "ShipmentCreated", "ShipmentFailed"),
             Flow("ShipmentCreated", "CustomerNotified"))
    return FlowState(SagaState(SagaStatus.PENDING, steps, on_failure), flows)


def types(transition: Transition) -> list[str]:
    return [event.type for event in transition.events]


def statuses(state: FlowState) -> list[str]:
    return [step.status.value for step in state.saga.steps]


def run(state: FlowState, work: Work, ok: bool = True, retryable: bool = False) -> Transition:
    """Claim `work` and settle it."""
    state = claim(state, work).flow
    return succeeded(state, work) if ok else failed(state, work, retryable)


def drive(state: FlowState, fail: set[int] = frozenset(), fail_comp: set[int] = frozenset()) -> tuple[FlowState, list]:
    """Start the flow and run every due call in order; steps in `fail` fail for good."""
    transition = start(state)
    state, queue, log = transition.flow, list(transition.works), types(transition)
    while queue:
        work = queue.pop(0)
        bad = work.index in (fail if work.kind == A else fail_comp)
        transition = run(state, work, ok=not bad)
        state = transition.flow
        queue += transition.works
        log += types(transition)
    return state, log


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


# --- operators ------------------------------------------------------------------------------------

def reach(status: str) -> FlowState:
    """The demo brought to `status` by the rules themselves."""
    if status == "pending":
        return demo()
    if status == "running":
        return run(start(demo()).flow, Work(A, RESERVE)).flow
    if status == "suspended":
        return run(run(start(demo(OnFailure.SUSPEND)).flow, Work(A, RESERVE)).flow, Work(A, CHARGE), ok=False).flow
    if status == "compensating":
        state = run(run(start(demo()).flow, Work(A, RESERVE)).flow, Work(A, CHARGE)).flow
        return run(state, Work(A, SHIP), ok=False).flow
    if status == "completed":
        return drive(demo())[0]
    if status == "compensated":
        return drive(demo(), fail={CHARGE})[0]
    return drive(demo(), fail={CHARGE}, fail_comp={RESERVE})[0]


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


# --- random flows ---------------------------------------------------------------------------------

@st.composite
def flows(draw) -> FlowState:
    """A valid choreography: each step listens to the start event or to an earlier step's event."""
    n = draw(st.integers(1, 5))
    steps, specs = [], []
    for i in range(n):
        sources = ["Start"] + [f"E{j}" for j in range(i)] + [f"F{j}" for j in range(i) if specs[j][2]]
        on = draw(st.sampled_from(sources))
        failure = f"F{i}" if draw(st.booleans()) else ""
        specs.append((on, f"E{i}", failure))
        steps.append(StepState(f"s{i}", has_compensation=draw(st.booleans()),
                               compensate_on_failure=draw(st.booleans())))
    failures = [f"F{i}" for i in range(n) if specs[i][2]]
    result = []
    for on, emits, failure in specs:
        compensate_on = tuple(draw(st.lists(st.sampled_from(failures), unique=True))) if failures else ()
        result.append(Flow(on, emits, failure, compensate_on))
    on_failure = draw(st.sampled_from(list(OnFailure)))
    return FlowState(SagaState(SagaStatus.PENDING, tuple(steps), on_failure), tuple(result))


def check(before: FlowState, transition: Transition) -> None:
    after = transition.flow
    business = [e.type for e in transition.events if e.type[0] in "EFS" and e.type[1:].isdigit() or e.type == "Start"]
    assert len(business) == len(set(business)), "an event is published once"
    assert not (set(business) & before.published), "an event published before is not published again"
    assert set(business) <= after.published
    for work in transition.works:
        flow, step = after.flows[work.index], after.saga.steps[work.index]
        if step.status in (StepStatus.RUNNING, StepStatus.COMPENSATING):
            continue  # a retry (by policy or by an operator) of a call that began before
        if work.kind == A and not transition.is_retry:
            assert flow.on in after.published, "an action is due only after the event it listens to"
        if work.kind == C and not transition.is_retry:
            assert step.took_effect and step.has_compensation, "only what took effect is compensated"
    assert set(transition.works) <= set(expected_works(after)) | set(transition.works if transition.is_retry else ())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=flows(), seed=st.integers(0, 2**32 - 1), operators=st.booleans())
def test_random_flows_keep_the_contract_and_come_to_rest(state: FlowState, seed: int, operators: bool):
    rng = random.Random(seed)
    transition = start(state)
    check(state, transition)
    state = transition.flow
    had_failure = False
    for _ in range(200):
        if operators and rng.random() < 0.1:
            action = rng.choice(list(OperatorAction))
            if state.status in VALID_ACTIONS[action]:
                try:
                    transition = act(state, action, in_flight=False)
                except InvalidTransition:
                    continue  # retry/resolve with no stuck step
                check(state, transition)
                state = transition.flow
                had_failure = True
                continue
        due = expected_works(state)
        if not due:
            if state.status in (SagaStatus.SUSPENDED, SagaStatus.FAILED) and not operators:
                break
            if state.status in RESTING:
                break
            raise AssertionError(f"a {state.status} saga waits for nothing: {state}")
        work = rng.choice(due)
        claimed = claim(state, work)
        state = claimed.flow
        outcome = rng.random()
        if outcome < 0.75:
            transition = succeeded(state, work)
        else:
            transition = failed(state, work, retryable=outcome < 0.85)
            had_failure |= not transition.is_retry
        check(state, transition)
        state = transition.flow
        assert expected_work(state) in (None, *expected_works(state))
    if state.status in RESTING:
        assert not expected_works(state) or state.status in (SagaStatus.SUSPENDED, SagaStatus.FAILED)
    if state.status == SagaStatus.COMPLETED:
        assert not had_failure or operators
        assert all(s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.RESOLVED)
                   for s in state.saga.steps)
    if not operators and not had_failure:
        assert state.status == SagaStatus.COMPLETED
