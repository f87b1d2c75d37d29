"""A saga's `error` is what is wrong with it now: the banner an operator reads on its page."""

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
