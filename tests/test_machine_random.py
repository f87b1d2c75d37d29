"""The saga state machine under hypothesis: random sagas driven the way the engine drives them,
with random outcomes and operator actions, keep the contract's properties."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagas.machine import (
    ACTIVE,
    RESTING,
    VALID_ACTIONS,
    Event,
    InvalidTransition,
    OnFailure,
    OperatorAction,
    SagaState,
    SagaStatus,
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
from tests.machine_helpers import RESOLVE, RETRY, A, C, check_shape, saga, step

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
