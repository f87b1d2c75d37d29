"""A worker makes a saga's calls that are due at once one after another (`services.advance`),
recording each from the saga as its own last transaction left it. These are the cases where
someone else moved the saga in between: the copy is stale, and the result must be exactly what
a fresh read would give."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from sagas import services
from sagas.machine import Kind
from sagas.models import Saga, SagaEvent, StepAttempt
from tests.drive import make_definition

SUCCESS = services.Outcome(succeeded=True)


def _started(correlation_id: str, max_attempts: int = 1):
    saga, _ = services.start_saga(make_definition(max_attempts=max_attempts), {}, correlation_id)
    call = services.claim(saga.pk, Kind.ACTION, 0, 1, worker="w1")
    assert call is not None and call.known is not None
    return saga, call


def test_calls_due_at_once_follow_in_one_transaction_each_to_the_end(db, hold_calls):
    saga, call = _started("continued")
    made = 0
    while call is not None:
        call = services.advance(call, SUCCESS, "w1")
        made += 1
    saga.refresh_from_db()
    assert (made, saga.status, saga.version) == (3, "completed", 5)
    assert list(SagaEvent.objects.filter(saga=saga).values_list("seq", flat=True)) == list(range(1, saga.event_seq + 1))
    assert StepAttempt.objects.filter(saga=saga, status="succeeded").count() == 3


def test_a_call_settled_by_recovery_meanwhile_is_not_recorded_again(db, hold_calls):
    saga, call = _started("recovered-meanwhile", max_attempts=2)
    # The lease ran out: recovery settles the attempt as lost and the saga waits for a retry.
    services.recover(now=timezone.now() + timedelta(hours=1))
    version = Saga.objects.get(pk=saga.pk).version

    assert services.advance(call, SUCCESS, "w1") is None

    saga.refresh_from_db()
    assert saga.version == version and saga.status == "running"
    attempt = StepAttempt.objects.get(pk=call.attempt_id)
    assert attempt.status == "failed" and "lease expired" in attempt.error


def test_an_operator_who_asked_for_compensation_meanwhile_is_obeyed(db, hold_calls, operator_user):
    saga, call = _started("compensate-meanwhile")
    services.act(str(saga.pk), "compensate", operator_user, "customer cancelled")

    next_call = services.advance(call, SUCCESS, "w1")

    # The action that was in flight succeeded, and is undone next instead of the saga going on.
    assert next_call is not None
    assert (next_call.kind, next_call.step_name) == (Kind.COMPENSATION, "reserve")
    while next_call is not None:
        next_call = services.advance(next_call, SUCCESS, "w1")
    saga.refresh_from_db()
    assert saga.status == "compensated"
    assert StepAttempt.objects.filter(saga=saga, kind="action").count() == 1
