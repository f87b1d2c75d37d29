"""The saga state machine, rule by rule: one test per rule of CONTRACT.md section 2 and per
operator action of section 4."""

from __future__ import annotations

import pytest

from sagas.machine import (
    TERMINAL,
    InvalidTransition,
    Kind,
    OnFailure,
    SagaStatus,
    StepStatus,
    Work,
    claim,
    expected_work,
    start,
)
from tests.machine_helpers import (
    CD,
    CF,
    CING,
    RES,
    STATES,
    A,
    C,
    F,
    K,
    P,
    R,
    S,
    begin,
    events,
    move,
    saga,
    statuses,
    step,
    three,
)

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
