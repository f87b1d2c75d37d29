"""POST /api/events/ (bad input, permissions, what it records), choreography definitions through the
definitions API, and the services around choreography that need no worker: operator actions, the
deadline's WARNING alert. Calls are held (`hold_calls`) and driven by hand."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sagas import definitions, services
from sagas.demo.definitions import ORDER_FULFILMENT_CHOREOGRAPHY
from sagas.models import Alert, Saga, SagaEvent
from tests.drive import advance

pytestmark = pytest.mark.django_db

NAME = "order-fulfilment-choreography"


def event(**changes) -> dict:
    body = {"definition": NAME, "correlation_id": "c-1", "type": "OrderCreated", "source": "shop", "data": {}}
    return {**body, **changes}


# --- permissions ------------------------------------------------------------------------------------

def test_it_refuses_anonymous_callers(anonymous_api, demo_definitions):
    assert anonymous_api.post("/api/events/", event(), format="json").status_code == 401
    assert not Saga.objects.exists()


def test_it_refuses_viewers(viewer_api, demo_definitions):
    response = viewer_api.post("/api/events/", event(), format="json")
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]
    assert not Saga.objects.exists()


def test_it_accepts_a_service_token_of_the_operator_role(operator_user, demo_definitions, hold_calls):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator_user).key}")
    response = client.post("/api/events/", event(), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["result"] == "started"


# --- bad input ------------------------------------------------------------------------------------

def test_it_answers_400_for_malformed_json(operator_api, demo_definitions):
    response = operator_api.post("/api/events/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize("missing", ["definition", "correlation_id", "type"])
def test_it_answers_400_naming_a_missing_field(operator_api, demo_definitions, missing: str):
    body = event()
    del body[missing]
    response = operator_api.post("/api/events/", body, format="json")
    assert response.status_code == 400
    assert missing in response.json()
    assert not Saga.objects.exists()


def test_it_answers_400_for_data_that_is_not_an_object(operator_api, demo_definitions):
    response = operator_api.post("/api/events/", event(data=[1, 2]), format="json")
    assert response.status_code == 400
    assert response.json()["data"] == ["data must be a JSON object"]


def test_it_answers_400_for_an_unknown_definition(operator_api, demo_definitions):
    response = operator_api.post("/api/events/", event(definition="no-such-flow"), format="json")
    assert response.status_code == 400
    assert response.json()["definition"] == ["no definition named 'no-such-flow'"]


def test_it_answers_400_for_an_orchestration(operator_api, demo_definitions):
    response = operator_api.post("/api/events/", event(definition="order-fulfilment"), format="json")
    assert response.status_code == 400
    assert "orchestration" in response.json()["definition"][0]
    assert not Saga.objects.exists()


def test_it_answers_400_for_an_event_no_step_listens_to(operator_api, demo_definitions):
    response = operator_api.post("/api/events/", event(type="OrderShippedToMars"), format="json")
    assert response.status_code == 400
    message = response.json()["type"][0]
    assert "no step of order-fulfilment-choreography" in message and "'OrderShippedToMars'" in message
    assert "OrderCreated" in message
    assert not Saga.objects.exists()


def test_get_is_not_allowed(operator_api):
    assert operator_api.get("/api/events/").status_code == 405


# --- what it records --------------------------------------------------------------------------------

def test_the_start_event_starts_the_saga_with_its_data_as_context(operator_api, demo_definitions, hold_calls):
    response = operator_api.post("/api/events/", event(data={"order_id": "o-7"}, id="e-1"), format="json")
    assert response.status_code == 201
    saga = Saga.objects.get(correlation_id="c-1")
    assert response.json()["saga"]["id"] == str(saga.pk)
    assert saga.context == {"order_id": "o-7"}
    received = saga.events.get(type="EventReceived")
    assert received.data == {"type": "OrderCreated", "id": "e-1", "source": "shop", "correlation_id": "c-1",
                             "data": {"order_id": "o-7"}}
    assert services.publish_event(saga.pk, "OrderCreated") == 1
    saga.refresh_from_db()
    assert saga.status == "running"
    assert saga.events.get(type="OrderCreated").data["source"] == "shop"


def test_a_duplicate_event_id_is_answered_200_and_recorded_once(operator_api, demo_definitions, hold_calls):
    first = operator_api.post("/api/events/", event(id="e-1"), format="json")
    again = operator_api.post("/api/events/", event(id="e-1"), format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["result"] == "duplicate"
    assert "already recorded" in again.json()["detail"]
    assert SagaEvent.objects.filter(type="EventReceived").count() == 1


def test_the_start_event_again_without_an_id_starts_nothing_new(operator_api, demo_definitions, hold_calls):
    operator_api.post("/api/events/", event(), format="json")
    response = operator_api.post("/api/events/", event(), format="json")
    assert response.status_code == 202
    assert Saga.objects.count() == 1
    saga = Saga.objects.get()
    assert services.publish_event(saga.pk) == 1
    assert services.publish_event(saga.pk) == 0
    assert saga.events.filter(type="OrderCreated").count() == 1


def test_starting_through_the_sagas_api_publishes_the_start_event(operator_api, demo_definitions, hold_calls):
    response = operator_api.post("/api/sagas/", {"definition": NAME, "correlation_id": "c-2"}, format="json")
    assert response.status_code == 201
    saga = Saga.objects.get(pk=response.json()["id"])
    assert services.publish_event(saga.pk, "OrderCreated") == 1
    saga = advance(saga, True)
    assert saga.status == "running"
    assert list(saga.events.filter(type__in=["OrderCreated", "InventoryReserved"]).values_list("type", flat=True)) \
        == ["OrderCreated", "InventoryReserved"]


# --- choreography definitions ------------------------------------------------------------------------

def choreography(**step_changes) -> dict:
    body = copy.deepcopy(ORDER_FULFILMENT_CHOREOGRAPHY)
    body["name"] = "my-flow"
    for index, changes in step_changes.items():
        body["steps"][int(index[1:])].update(changes)
    return body


def test_a_choreography_definition_is_accepted_with_its_events(admin_api):
    response = admin_api.post("/api/definitions/", choreography(), format="json")
    assert response.status_code == 201, response.json()
    body = admin_api.get("/api/definitions/my-flow/").json()
    assert body["mode"] == "choreography" and body["deadline_seconds"] == 60
    assert body["steps"][1]["emits_on_failure"] == "PaymentFailed"
    assert body["steps"][0]["compensate_on"] == ["PaymentFailed", "ShipmentFailed"]


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"s1": {"on": "SomethingElse"}}, "only one start event"),
    ({"s0": {"on": "CustomerNotified"}}, "no start event"),
    ({"s3": {"emits": "OrderCreated"}, "s0": {"on": "OrderCreated"}}, "no start event"),
    ({"s0": {"compensate_on": ["NeverHappens"]}}, "no step emits 'NeverHappens'"),
    ({"s3": {"compensate_on": ["PaymentFailed"]}}, "has no compensation"),
    ({"s2": {"on": ""}}, "needs the event it reacts to"),
    ({"s1": {"emits": "StepFailed"}}, "sagaboard's own events"),
])
def test_an_invalid_choreography_is_refused_with_the_reason(admin_api, changes: dict, complaint: str):
    response = admin_api.post("/api/definitions/", choreography(**changes), format="json")
    assert response.status_code == 400
    assert any(complaint in problem for problem in response.json()["steps"]), response.json()


def test_a_loop_of_events_is_refused(admin_api):
    body = choreography(s3={"emits": "InventoryReserved"})  # the notification would charge the payment again
    response = admin_api.post("/api/definitions/", body, format="json")
    assert response.status_code == 400
    assert any("loop" in problem for problem in response.json()["steps"]), response.json()


# --- operators and deadlines (no worker) ------------------------------------------------------------

def started(correlation_id: str = "c-9", context: dict | None = None) -> Saga:
    saga, _ = services.start_saga(definitions.latest(NAME), context or {}, correlation_id)
    services.publish_event(saga.pk)
    return Saga.objects.get(pk=saga.pk)


def test_an_operator_compensates_a_running_choreography_in_reverse(operator_api, demo_definitions, hold_calls):
    saga = advance(started(), True, True)  # inventory reserved, payment charged
    response = operator_api.post(f"/api/sagas/{saga.pk}/actions/compensate/", {"reason": "customer cancelled"},
                                 format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "compensating"
    saga = advance(saga, True, True)
    assert saga.status == "compensated"
    undone = list(saga.events.filter(type="StepCompensated").order_by("seq").values_list("step", flat=True))
    assert undone == ["charge_payment", "reserve_inventory"]


def test_a_failed_compensation_raises_one_critical_alert_and_retry_finishes_it(operator_api, demo_definitions,
                                                                              hold_calls):
    saga = advance(started(), True, False, False)  # reserved, payment fails, the release fails
    assert saga.status == "failed"
    assert list(Alert.objects.filter(saga=saga).values_list("severity", flat=True)) == ["CRITICAL"]
    response = operator_api.post(f"/api/sagas/{saga.pk}/actions/retry/", {"reason": "warehouse is back"},
                                 format="json")
    assert response.json()["status"] == "compensating"
    assert advance(saga, True).status == "compensated"


def test_a_flow_waiting_past_its_deadline_raises_one_warning(demo_definitions, hold_calls):
    saga = started()
    assert services.recover(timezone.now())["late_flows"] == 0
    later = timezone.now() + timedelta(seconds=61)
    assert services.recover(later)["late_flows"] == 1
    alert = Alert.objects.get(saga=saga)
    assert alert.severity == "WARNING" and alert.open
    assert "waited more than 60 s" in alert.message and "InventoryReserved" in alert.message
    waited = saga.events.get(type="WaitedTooLong")
    assert waited.data["waiting_for"] == ["InventoryReserved"]
    assert services.recover(later + timedelta(seconds=120))["late_flows"] == 0
    assert Alert.objects.filter(saga=saga).count() == 1


# --- the flow of one saga -----------------------------------------------------------------------------

def test_the_flow_shows_observed_missing_and_held_events(operator_api, viewer_api, demo_definitions, hold_calls):
    operator_api.post("/api/events/", event(type="PaymentProcessed", id="p-1"), format="json")  # early
    operator_api.post("/api/events/", event(id="o-1"), format="json")
    saga = Saga.objects.get(correlation_id="c-1")
    services.publish_event(saga.pk)
    body = viewer_api.get(f"/api/sagas/{saga.pk}/flow/").json()
    assert [e["type"] for e in body["events"]] == ["OrderCreated", "InventoryReserved", "PaymentProcessed",
                                                   "PaymentFailed", "ShipmentCreated", "ShipmentFailed",
                                                   "CustomerNotified"]
    assert body["observed"] == ["OrderCreated"]
    assert body["waiting_for"] == ["InventoryReserved"]
    assert body["missing"] == ["InventoryReserved", "PaymentProcessed", "ShipmentCreated", "CustomerNotified"]
    assert body["held"] == ["PaymentProcessed"]
    advance(saga, True)  # the inventory is reserved: the held PaymentProcessed is applied after it
    body = viewer_api.get(f"/api/sagas/{saga.pk}/flow/").json()
    assert body["observed"] == ["OrderCreated", "InventoryReserved", "PaymentProcessed"]
    assert body["held"] == [] and body["waiting_for"] == ["ShipmentCreated", "ShipmentFailed"]
    assert {e["type"]: e["source"] for e in body["events"] if e["observed"]}["PaymentProcessed"] == "shop"


def test_an_orchestration_has_no_flow(viewer_api, demo_definitions, hold_calls):
    saga, _ = services.start_saga(demo_definitions, {}, "orchestrated")
    response = viewer_api.get(f"/api/sagas/{saga.pk}/flow/")
    assert response.status_code == 404
    assert "orchestration" in response.json()["detail"]


def test_event_data_with_nul_characters_is_refused(operator_api, demo_definitions):
    response = operator_api.post("/api/events/", event(data={"note": "a\x00b"}), format="json")
    assert response.status_code == 400
    assert not Saga.objects.exists()


def test_the_saga_page_draws_the_services_and_the_events_between_them(viewer_user, demo_definitions, hold_calls):
    from django.test import Client

    saga = started("c-page")
    client = Client()
    client.force_login(viewer_user)
    page = client.get(f"/sagas/{saga.pk}/").content.decode()
    assert "InventoryReserved" in page and "PaymentFailed" in page
    assert 'id="step&#45;reserve_inventory"' in page and ">inventory</text>" in page


def test_recovery_finds_a_received_event_whose_publish_task_was_lost(demo_definitions, hold_calls, settings):
    saga, _ = services.start_saga(definitions.latest(NAME), {}, "c-lost")  # its publish task never ran
    later = timezone.now() + timedelta(seconds=settings.SAGABOARD_STALL_SECONDS + 1)
    assert services.recover(later)["stalled_sagas"] == 1
    assert services.publish_event(saga.pk) == 1  # what the re-enqueued task does
    assert Saga.objects.get(pk=saga.pk).status == "running"
