"""Choreography through a real Celery worker on Redis and PostgreSQL: the demo flow, its failure
path, events posted from outside (in order, out of order, duplicated), and its graph."""

from __future__ import annotations

from collections import Counter

import pytest

from sagas.models import Effect, Saga
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

NAME = "order-fulfilment-choreography"
STEPS = ["reserve_inventory", "charge_payment", "create_shipment", "send_notification"]
FLOW = ["OrderCreated", "InventoryReserved", "PaymentProcessed", "ShipmentCreated", "CustomerNotified"]
RESTING = {"completed", "compensated", "failed", "suspended"}


def at_rest(saga_id, timeout: float = 60) -> Saga:
    def resting():
        saga = Saga.objects.get(pk=saga_id)
        return saga if saga.status in RESTING else None

    return wait_for(resting, timeout, what=f"saga {saga_id} at rest")


def statuses(saga: Saga) -> dict[str, str]:
    return dict(saga.steps.order_by("index").values_list("name", "status"))


def business_events(saga: Saga) -> list[str]:
    names = set(FLOW) | {"PaymentFailed", "ShipmentFailed"}
    return [t for t in saga.events.order_by("seq").values_list("type", flat=True) if t in names]


def post_event(api, correlation_id: str, event_type: str, event_id: str, data: dict | None = None):
    return api.post("/api/events/", {"definition": NAME, "correlation_id": correlation_id, "type": event_type,
                                     "source": "test-service", "id": event_id, "data": data or {}}, format="json")


def test_the_choreography_demo_completes_with_each_event_published_once(celery_worker_process, demo_definitions,
                                                                         operator_api):
    response = operator_api.post("/api/sagas/", {"definition": NAME, "correlation_id": "chor-happy",
                                                 "context": {"order_id": "o-1"}}, format="json")
    assert response.status_code == 201, response.json()
    saga = at_rest(response.json()["id"])
    assert saga.status == "completed", celery_worker_process.tail()
    assert statuses(saga) == {name: "succeeded" for name in STEPS}
    assert business_events(saga) == FLOW
    published = saga.events.get(type="InventoryReserved")
    assert published.step == "reserve_inventory"
    assert published.data["correlation_id"] == "chor-happy"
    assert published.data["data"] == {"reservation_id": f"r-{str(saga.pk)[:8]}"}
    assert {"reservation_id", "payment_id", "shipment_id", "notified"} <= set(saga.context)
    keys = Counter(Effect.objects.filter(correlation_id="chor-happy").values_list("idempotency_key", flat=True))
    assert keys == Counter(f"saga:{saga.pk}:{name}:action" for name in STEPS)


def test_a_payment_failure_ends_compensated_with_the_inventory_released_once(celery_worker_process,
                                                                            demo_definitions, operator_api):
    response = operator_api.post("/api/sagas/", {"definition": NAME, "correlation_id": "chor-payment-fails",
                                                 "context": {"fail": {"charge_payment": "always"}}}, format="json")
    saga = at_rest(response.json()["id"])
    assert saga.status == "compensated", celery_worker_process.tail()
    assert statuses(saga) == {"reserve_inventory": "compensated", "charge_payment": "failed",
                              "create_shipment": "skipped", "send_notification": "skipped"}
    assert business_events(saga) == ["OrderCreated", "InventoryReserved", "PaymentFailed"]
    assert saga.attempts.filter(step__name="charge_payment", kind="action").count() == 3
    effects = Counter(Effect.objects.filter(correlation_id="chor-payment-fails").values_list("service", "operation"))
    assert effects == Counter({("inventory", "reserve"): 1, ("inventory", "release"): 1})


def test_a_shipment_failure_refunds_and_releases(celery_worker_process, demo_definitions, operator_api):
    response = operator_api.post("/api/sagas/", {"definition": NAME, "correlation_id": "chor-shipping-fails",
                                                 "context": {"fail": {"create_shipment": "always"}}}, format="json")
    saga = at_rest(response.json()["id"])
    assert saga.status == "compensated", celery_worker_process.tail()
    assert statuses(saga)["charge_payment"] == "compensated"
    assert statuses(saga)["reserve_inventory"] == "compensated"
    operations = set(Effect.objects.filter(correlation_id="chor-shipping-fails").values_list("operation", flat=True))
    assert {"refund", "release"} <= operations and "cancel" not in operations


def test_events_posted_in_order_and_duplicated_build_one_completed_saga(celery_worker_process, demo_definitions,
                                                                        operator_api):
    answers = [post_event(operator_api, "outside-in-order", event_type, f"evt-{n}")
               for n, event_type in enumerate(FLOW[:4])]
    assert answers[0].status_code == 201, answers[0].json()
    assert [a.status_code for a in answers[1:]] == [202, 202, 202]
    again = post_event(operator_api, "outside-in-order", "InventoryReserved", "evt-1")
    assert again.status_code == 200
    assert "already recorded" in again.json()["detail"]
    saga = at_rest(answers[0].json()["saga"]["id"])
    assert Saga.objects.filter(correlation_id="outside-in-order").count() == 1
    assert saga.status == "completed", celery_worker_process.tail()
    assert business_events(saga) == FLOW
    received = [data["id"] for data in saga.events.filter(type="EventReceived").values_list("data", flat=True)]
    assert sorted(received) == ["evt-0", "evt-1", "evt-2", "evt-3"]


def test_events_posted_out_of_order_are_applied_in_flow_order(celery_worker_process, demo_definitions, operator_api):
    early = post_event(operator_api, "outside-out-of-order", "PaymentProcessed", "pay-1", {"payment_id": "p-outside"})
    assert early.status_code == 201, early.json()
    saga_id = early.json()["saga"]["id"]
    saga = Saga.objects.get(pk=saga_id)
    assert saga.status == "pending"
    assert business_events(saga) == []  # held until the events before it are published
    start = post_event(operator_api, "outside-out-of-order", "OrderCreated", "order-1", {"order_id": "o-9"})
    assert start.status_code == 202
    saga = at_rest(saga_id)
    assert saga.status == "completed", celery_worker_process.tail()
    assert business_events(saga) == FLOW
    types = list(saga.events.order_by("seq").values_list("type", flat=True))
    assert types.index("EventReceived") < types.index("InventoryReserved") < types.index("PaymentProcessed")
    # The payment service reported its event itself: the step is done there, not run here.
    assert statuses(saga)["charge_payment"] == "succeeded"
    assert not saga.attempts.filter(step__name="charge_payment").exists()
    assert saga.context["payment_id"] == "p-outside" and saga.context["order_id"] == "o-9"
    assert post_event(operator_api, "outside-out-of-order", "PaymentProcessed", "pay-1").status_code == 200
    assert saga.events.filter(type="EventReceived", data__id="pay-1").count() == 1


def test_the_graph_svg_names_the_events(celery_worker_process, demo_definitions, operator_api, viewer_api):
    response = operator_api.post("/api/sagas/", {"definition": NAME, "correlation_id": "chor-graph"}, format="json")
    saga = at_rest(response.json()["id"])
    svg = viewer_api.get(f"/api/sagas/{saga.pk}/graph.svg").content.decode()
    for event in FLOW + ["PaymentFailed", "ShipmentFailed"]:
        assert event in svg
    assert 'id="step&#45;reserve_inventory"' in svg and "status&#45;succeeded" in svg
    for service in ("inventory", "payment", "shipping", "notification"):
        assert f">{service}</text>" in svg
    definition_svg = viewer_api.get(f"/api/definitions/{NAME}/graph.svg").content.decode()
    assert "InventoryReserved" in definition_svg and "PaymentFailed" in definition_svg
