"""Driving sagas through services without a worker: claim the call that is due, record an outcome.

For tests of the rules at the service level (operator actions, alerts, audit), where a real
worker would only add waiting. Outcomes are given, not produced by handlers. Every test that uses this module should take the
`hold_calls` fixture, so that a worker running for other tests does not take these calls.
"""

from __future__ import annotations

from sagas import definitions, services
from sagas.api.serializers import DefinitionSerializer
from sagas.models import Saga


def make_definition(name: str = "three-steps", on_failure: str = "compensate", max_attempts: int = 1):
    body = {"name": name, "on_failure": on_failure, "steps": [
        {"name": "reserve", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release",
         "max_attempts": max_attempts},
        {"name": "charge", "action": "demo.payment.charge", "compensation": "demo.payment.refund",
         "max_attempts": max_attempts},
        {"name": "notify", "action": "demo.notification.send", "max_attempts": max_attempts},
    ]}
    serializer = DefinitionSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    return definitions.save_version(serializer.validated_data)[0]


def advance(saga: Saga, *outcomes: bool) -> Saga:
    """Run the due calls with these outcomes (True: success, False: a permanent failure)."""
    for succeeded in outcomes:
        due = services.next_work(saga.pk)
        assert due is not None, f"saga {saga.pk} ({Saga.objects.get(pk=saga.pk).status}) waits for no call"
        work, number = due
        call = services.claim(saga.pk, work.kind, work.index, number)
        assert call is not None
        outcome = services.Outcome(succeeded=True) if succeeded else \
            services.Outcome(succeeded=False, error="it broke", permanent=True)
        services.record_outcome(call, outcome)
    saga.refresh_from_db()
    return saga


def saga_in(status: str, definition=None, correlation_id: str | None = None) -> Saga:
    """A saga brought to `status` through the services: running, suspended, failed, completed, compensated."""
    if definition is None:
        definition = make_definition(on_failure="suspend" if status == "suspended" else "compensate")
    saga, _ = services.start_saga(definition, {}, correlation_id or f"{status}-saga")
    moves = {
        "pending": (),
        "running": (True,),
        "suspended": (True, False),
        "failed": (True, False, False),  # reserve ok, charge fails, the release fails too
        "completed": (True, True, True),
        "compensated": (True, False, True),
    }[status]
    saga = advance(saga, *moves)
    assert saga.status == status, saga.status
    return saga
