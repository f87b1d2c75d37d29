"""Hypothesis driving random choreography flows (random event graphs, outcomes and operator actions)
the way the services and the workers do: every call is due only after its event, each event is
published once, compensations run only for steps that took effect, and a saga left alone always
comes to rest in the status its history calls for."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagas.choreography import (
    Flow,
    FlowState,
    Transition,
    act,
    claim,
    expected_work,
    expected_works,
    failed,
    start,
    succeeded,
)
from sagas.machine import (
    RESTING,
    VALID_ACTIONS,
    InvalidTransition,
    OnFailure,
    OperatorAction,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from tests.choreography_helpers import A, C

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
