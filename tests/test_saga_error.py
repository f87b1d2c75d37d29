"""A saga's `error` and `current_step` say what is wrong with it now: what an operator reads first on its page."""

from __future__ import annotations

from sagas import services
from sagas.machine import Kind
from sagas.models import StepAttempt
from tests.drive import advance, make_definition, saga_in


def test_a_failure_that_a_retry_got_past_is_cleared_when_the_saga_completes(db, hold_calls):
    saga, _ = services.start_saga(make_definition(max_attempts=2), {}, "retried-then-completed")
    call = services.claim(saga.pk, Kind.ACTION, 0, 1)
    services.record_outcome(call, services.Outcome(succeeded=False, error="inventory timed out"))
    saga.refresh_from_db()
    assert saga.status == "running" and "inventory timed out" in saga.error  # waiting for its retry

    retry = services.claim(saga.pk, Kind.ACTION, 0, 2)
    services.record_outcome(retry, services.Outcome(succeeded=True))
    saga = advance(saga, True, True)

    assert (saga.status, saga.error) == ("completed", "")
    first = StepAttempt.objects.get(saga=saga, step__index=0, number=1)
    assert first.status == "failed" and first.error == "inventory timed out"  # the history keeps it


def test_a_saga_that_compensated_or_failed_keeps_the_error_that_caused_it(db, hold_calls):
    for status in ("compensated", "failed", "suspended"):
        saga = saga_in(status, correlation_id=f"kept-{status}")
        assert "it broke" in saga.error, (status, saga.error)


def test_the_current_step_of_a_stuck_saga_is_the_step_that_needs_a_person(db, hold_calls):
    # failed: reserve ok, charge failed, then reserve's compensation failed: the compensation is stuck.
    assert saga_in("failed", correlation_id="stuck-failed").current_step == "reserve"
    # suspended: charge failed and the saga waits for an operator at charge.
    assert saga_in("suspended", correlation_id="stuck-suspended").current_step == "charge"
