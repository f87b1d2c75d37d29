"""The engine through a real Celery worker on Redis and PostgreSQL (not eager mode)."""

from __future__ import annotations

from collections import Counter

import pytest

from sagas import services
from sagas.models import Alert, Effect, Saga
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

STEPS = ["reserve_inventory", "charge_payment", "create_shipment", "send_notification"]
RESTING = {"completed", "compensated", "failed", "suspended"}


def run_saga(definition, context: dict, correlation_id: str, timeout: float = 60) -> Saga:
    saga, created = services.start_saga(definition, context, correlation_id)
    assert created
    return wait_for(lambda: _resting(saga.pk), timeout, what=f"saga {correlation_id} at rest")


def _resting(saga_id) -> Saga | None:
    saga = Saga.objects.get(pk=saga_id)
    return saga if saga.status in RESTING else None


def statuses(saga: Saga) -> dict[str, str]:
    return dict(saga.steps.order_by("index").values_list("name", "status"))


def event_types(saga: Saga) -> list[tuple[str, str | None]]:
    return list(saga.events.order_by("seq").values_list("type", "step"))


def test_it_completes_the_happy_path(celery_worker_process, demo_definitions):
    saga = run_saga(demo_definitions, {}, "happy")
    assert saga.status == "completed", celery_worker_process.tail()
    assert statuses(saga) == {name: "succeeded" for name in STEPS}
    assert saga.finished_at is not None
    assert {"reservation_id", "payment_id", "shipment_id", "notified"} <= set(saga.context)
    types = [t for t, _ in event_types(saga)]
    assert types[0] == "SagaStarted" and types[-1] == "SagaCompleted"
    keys = Counter(Effect.objects.filter(correlation_id="happy").values_list("idempotency_key", flat=True))
    assert keys == Counter(f"saga:{saga.pk}:{name}:action" for name in STEPS)


def test_it_compensates_succeeded_steps_in_reverse_order(celery_worker_process, demo_definitions):
    saga = run_saga(demo_definitions, {"fail": {"create_shipment": "always"}}, "deep-failure")
    assert saga.status == "compensated"
    assert statuses(saga) == {"reserve_inventory": "compensated", "charge_payment": "compensated",
                              "create_shipment": "failed", "send_notification": "skipped"}
    compensated = [step for kind, step in event_types(saga) if kind == "StepCompensated"]
    assert compensated == ["charge_payment", "reserve_inventory"]
    assert saga.attempts.filter(step__name="create_shipment", kind="action").count() == 3


def test_it_retries_then_succeeds_with_one_effect(celery_worker_process, demo_definitions):
    saga = run_saga(demo_definitions, {"fail": {"charge_payment": 2}}, "flaky-payment")
    assert saga.status == "completed"
    attempts = list(saga.attempts.filter(step__name="charge_payment").order_by("number").values_list(
        "number", "status", "idempotency_key"))
    key = f"saga:{saga.pk}:charge_payment:action"
    assert attempts == [(1, "failed", key), (2, "failed", key), (3, "succeeded", key)]
    assert Effect.objects.filter(idempotency_key=key).count() == 1


def test_a_failing_compensation_fails_the_saga_with_one_critical_alert(celery_worker_process, demo_definitions):
    context = {"fail": {"charge_payment": "always"}, "fail_compensation": {"reserve_inventory": "always"}}
    saga = run_saga(demo_definitions, context, "stuck")
    assert saga.status == "failed"
    assert statuses(saga)["reserve_inventory"] == "compensation_failed"
    alerts = list(Alert.objects.filter(saga=saga).values_list("severity", "open"))
    assert alerts == [("CRITICAL", True)]


def test_starting_the_same_correlation_id_twice_starts_one_saga(celery_worker_process, demo_definitions):
    first, created = services.start_saga(demo_definitions, {}, "twice")
    again, created_again = services.start_saga(demo_definitions, {"other": 1}, "twice")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Saga.objects.filter(correlation_id="twice").count() == 1
