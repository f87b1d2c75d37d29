"""Crash recovery: a worker killed with kill -9 in the middle of a step, restarted, and every saga
still reaching a terminal status with exactly one effect per idempotency key."""

from __future__ import annotations

from collections import Counter

import pytest

from sagas import definitions, services
from sagas.api.serializers import DefinitionSerializer
from sagas.models import Effect, Saga, StepAttempt
from tests.conftest import beat_process, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]

STEPS = ["reserve_inventory", "charge_payment", "create_shipment", "send_notification"]
HANDLERS = {
    "reserve_inventory": ("demo.inventory.reserve", "demo.inventory.release"),
    "charge_payment": ("demo.payment.charge", "demo.payment.refund"),
    "create_shipment": ("demo.shipping.create", "demo.shipping.cancel"),
    "send_notification": ("demo.notification.send", None),
}


def short_lease_definition():
    """The demo order with a 4 s timeout per step, so a lost call's lease expires quickly."""
    body = {"name": "order-short-lease", "steps": [
        {"name": name, "action": action, "compensation": compensation, "max_attempts": 3,
         "backoff_seconds": 0, "timeout_seconds": 4}
        for name, (action, compensation) in HANDLERS.items()]}
    serializer = DefinitionSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    return definitions.save_version(serializer.validated_data)[0]


def test_a_worker_killed_mid_step_loses_no_saga_and_repeats_no_effect(celery_worker_process, tmp_path):
    definition = short_lease_definition()
    beat = beat_process(tmp_path / "beat.log")
    try:
        sagas = [services.start_saga(definition, {"sleep": {"create_shipment": 2}}, f"crash-{n}")[0]
                 for n in range(6)]
        wait_for(lambda: StepAttempt.objects.filter(step__name="create_shipment", status="running").exists(),
                 timeout=30, what="a create_shipment call under way")
        celery_worker_process.kill9()
        in_flight = set(StepAttempt.objects.filter(status="running").values_list("pk", flat=True))
        assert in_flight, "the worker died with calls under way"

        celery_worker_process.start()
        resting = wait_for(
            lambda: all(s.status == "completed" for s in Saga.objects.filter(pk__in=[s.pk for s in sagas])),
            timeout=120, interval=0.5, what="every saga completed after the crash")
        assert resting
    finally:
        beat.stop()

    for attempt in StepAttempt.objects.filter(pk__in=in_flight):
        assert attempt.status == "failed" and "lease expired" in attempt.error
    for saga in sagas:
        effects = Counter(Effect.objects.filter(correlation_id=saga.correlation_id)
                          .values_list("idempotency_key", flat=True))
        assert effects == Counter(f"saga:{saga.pk}:{name}:action" for name in STEPS), effects
