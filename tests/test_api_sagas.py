"""The sagas API: start (idempotent), list with filters, read with steps and attempts, events; bad input."""

from __future__ import annotations

import json

import pytest

from sagas.models import Saga
from tests.drive import make_definition, saga_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hold_calls")]


def start(client, body, **extra):
    return client.post("/api/sagas/", body, format="json", **extra)


def test_it_starts_a_saga_on_the_latest_version(operator_api, demo_definitions):
    response = start(operator_api, {"definition": "order-fulfilment", "context": {"order_id": 7},
                                    "correlation_id": "order-7"})
    assert response.status_code == 201
    body = response.json()
    assert (body["definition"], body["definition_version"], body["correlation_id"], body["status"]) == \
        ("order-fulfilment", 1, "order-7", "pending")
    assert [s["name"] for s in body["steps"]] == ["reserve_inventory", "charge_payment", "create_shipment",
                                                  "send_notification"]
    assert body["context"] == {"order_id": 7} and body["version"] == 1
    assert Saga.objects.filter(correlation_id="order-7").count() == 1


def test_the_same_correlation_id_again_answers_200_with_the_existing_saga(operator_api, demo_definitions):
    first = start(operator_api, {"definition": "order-fulfilment", "correlation_id": "same"}).json()
    again = start(operator_api, {"definition": "order-fulfilment", "correlation_id": "same", "context": {"x": 1}})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["context"] == {}
    assert Saga.objects.count() == 1


@pytest.mark.parametrize("body, field", [
    ({"definition": "no-such-thing"}, "definition"),
    ({"definition": "order-fulfilment", "context": [1, 2]}, "context"),
    ({"definition": "order-fulfilment", "context": "text"}, "context"),
    ({"definition": "order-fulfilment", "context": {"blob": "x" * (256 * 1024)}}, "context"),
    ({"definition": "order-fulfilment", "version": 99}, "definition"),
    ({"definition": "order-fulfilment", "correlation_id": ""}, "correlation_id"),
    ({"context": {}}, "definition"),
    ({"definition": 5, "context": {}}, "definition"),
])
def test_bad_starts_are_refused_with_the_field_and_start_nothing(operator_api, demo_definitions, body, field):
    response = start(operator_api, body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert Saga.objects.count() == 0


def test_malformed_json_is_a_400_that_says_so(operator_api, demo_definitions):
    response = operator_api.post("/api/sagas/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
    assert Saga.objects.count() == 0


def test_it_reads_a_saga_with_steps_and_attempts_in_order(viewer_api):
    saga = saga_in("compensated")
    body = viewer_api.get(f"/api/sagas/{saga.pk}/").json()
    assert body["status"] == "compensated" and body["finished_at"]
    reserve = body["steps"][0]
    assert [(a["kind"], a["number"], a["status"]) for a in reserve["attempts"]] == \
        [("action", 1, "succeeded"), ("compensation", 1, "succeeded")]
    assert reserve["attempts"][1]["idempotency_key"] == f"saga:{saga.pk}:reserve:compensation"
    charge = body["steps"][1]
    assert charge["status"] == "failed" and charge["attempts"][0]["error"] == "it broke"


def test_events_are_ordered_by_seq(viewer_api):
    saga = saga_in("completed")
    events = viewer_api.get(f"/api/sagas/{saga.pk}/events/").json()["results"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "SagaStarted" and events[-1]["type"] == "SagaCompleted"
    assert {"seq", "type", "step", "at", "data"} == set(events[1])


def test_it_lists_and_filters(viewer_api):
    definition = make_definition()
    done = saga_in("completed", definition, "order-100")
    broken = saga_in("failed", definition, "order-200")
    running = saga_in("running", definition, "other-1")

    def ids(**params):
        return [s["id"] for s in viewer_api.get("/api/sagas/", params).json()["results"]]

    assert ids() == [str(running.pk), str(broken.pk), str(done.pk)]
    assert ids(status="failed") == [str(broken.pk)]
    assert ids(status="failed,completed") == [str(broken.pk), str(done.pk)]
    assert ids(definition="three-steps", correlation_id="order-100") == [str(done.pk)]
    assert ids(search="order-") == [str(broken.pk), str(done.pk)]
    assert ids(search=str(running.pk)) == [str(running.pk)]
    assert ids(search=str(running.pk)[:8]) == [str(running.pk)]
    assert ids(ordering="created_at") == [str(done.pk), str(broken.pk), str(running.pk)]
    page = viewer_api.get("/api/sagas/", {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


@pytest.mark.parametrize("params, field", [({"status": "exploded"}, "status"), ({"ordering": "context"}, "ordering")])
def test_bad_filters_are_400(viewer_api, params, field):
    response = viewer_api.get("/api/sagas/", params)
    assert response.status_code == 400 and field in response.json()


def test_a_page_beyond_the_end_is_404_not_500(viewer_api):
    assert viewer_api.get("/api/sagas/", {"page": 9}).status_code == 404
    assert viewer_api.get("/api/sagas/", {"page": "x"}).status_code == 404


def test_the_list_costs_the_same_queries_whatever_the_page_size(viewer_api, django_assert_max_num_queries):
    definition = make_definition()
    for n in range(30):
        saga_in("running", definition, f"bulk-{n}")
    with django_assert_max_num_queries(4):
        assert len(viewer_api.get("/api/sagas/", {"page_size": 30}).json()["results"]) == 30


def test_the_detail_costs_the_same_queries_whatever_the_attempts(viewer_api, django_assert_max_num_queries):
    saga = saga_in("failed")
    with django_assert_max_num_queries(5):
        viewer_api.get(f"/api/sagas/{saga.pk}/")


def test_unknown_and_malformed_ids_are_404_json(viewer_api):
    for path in ("/api/sagas/nope/", "/api/sagas/00000000-0000-0000-0000-000000000000/",
                 "/api/sagas/nope/events/", "/api/sagas/00000000-0000-0000-0000-000000000000/events/"):
        response = viewer_api.get(path)
        assert response.status_code == 404 and "detail" in response.json(), path


def test_the_demo_effects_ledger_filters_by_correlation_id(viewer_api):
    from sagas.models import Effect

    Effect.objects.create(idempotency_key="k1", service="payment", operation="charge", correlation_id="c-1")
    Effect.objects.create(idempotency_key="k2", service="payment", operation="charge", correlation_id="c-2")
    body = viewer_api.get("/api/demo/effects/", {"correlation_id": "c-1"}).json()
    assert [e["idempotency_key"] for e in body["results"]] == ["k1"]
    assert json.dumps(body)  # plain JSON


def test_past_the_exact_limit_the_count_is_the_planners_estimate(viewer_api, monkeypatch):
    from sagas.api import pagination

    monkeypatch.setattr(pagination, "EXACT_UP_TO", 2)
    definition = make_definition()
    for n in range(3):
        saga_in("running", definition, f"many-{n}")
    body = viewer_api.get("/api/sagas/").json()
    assert body["count_is_estimate"] is True and body["count"] >= 3
    assert len(body["results"]) == 3
    small = viewer_api.get("/api/sagas/", {"correlation_id": "many-1"}).json()
    assert (small["count"], small["count_is_estimate"]) == (1, False)


@pytest.mark.parametrize("params", [{"correlation_id": "a\x00b"}, {"search": "x\x00"}, {"definition": "\x00"}])
def test_nul_characters_in_filters_are_a_400(viewer_api, params):
    response = viewer_api.get("/api/sagas/", params)
    assert response.status_code == 400 and "NUL" in response.json()["detail"]


def test_a_nul_character_in_the_context_is_a_400_and_starts_nothing(operator_api, demo_definitions):
    response = start(operator_api, {"definition": "order-fulfilment", "context": {"note": "a\x00b"}})
    assert response.status_code == 400
    assert Saga.objects.count() == 0
