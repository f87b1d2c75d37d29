"""Helpers of the choreography rule tests (`tests/test_choreography*.py`): the demo flow, driving it,
and reaching each saga status."""

from __future__ import annotations

from sagas.choreography import (
    Flow,
    FlowState,
    Transition,
    claim,
    failed,
    start,
    succeeded,
)
from sagas.machine import (
    Kind,
    OnFailure,
    SagaState,
    SagaStatus,
    StepState,
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
