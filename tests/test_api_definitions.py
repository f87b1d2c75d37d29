"""The definitions API: versions, one version, the diff between two, import/export, invalid definitions."""

from __future__ import annotations

import copy

import pytest

from sagas.models import Definition, DefinitionStep

pytestmark = pytest.mark.django_db

ORDER = {
    "name": "order",
    "description": "an order",
    "steps": [
        {"name": "reserve_inventory", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release"},
        {"name": "charge_payment", "action": "demo.payment.charge", "compensation": "demo.payment.refund"},
        {"name": "send_notification", "action": "demo.notification.send"},
    ],
}


def changed(body: dict, **step_changes) -> dict:
    """`body` with step fields changed: changed(ORDER, charge_payment={"max_attempts": 5})."""
    body = copy.deepcopy(body)
    for step in body["steps"]:
        step.update(step_changes.get(step["name"], {}))
    return body


@pytest.fixture
def two_versions(admin_api):
    assert admin_api.post("/api/definitions/", ORDER, format="json").status_code == 201
    second = changed(ORDER, charge_payment={"max_attempts": 5})
    second["steps"].insert(2, {"name": "create_shipment", "action": "demo.shipping.create"})
    second["steps"] = [s for s in second["steps"] if s["name"] != "send_notification"]
    response = admin_api.post("/api/definitions/", second, format="json")
    assert response.status_code == 201 and response.json()["version"] == 2
    return second


def test_it_lists_the_versions_newest_first(two_versions, viewer_api, admin_user):
    response = viewer_api.get("/api/definitions/order/")
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert [(v["version"], v["created_by"], v["sagas"]) for v in response.json()["versions"]] == [
        (2, admin_user.username, 0), (1, admin_user.username, 0)]
    assert [v["version"] for v in viewer_api.get("/api/definitions/order/versions/").json()] == [2, 1]


def test_it_reads_one_version_as_it_was_saved(two_versions, viewer_api):
    response = viewer_api.get("/api/definitions/order/versions/1/")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    assert [s["name"] for s in body["steps"]] == ["reserve_inventory", "charge_payment", "send_notification"]
    assert body["steps"][1]["max_attempts"] == 3


def test_an_unknown_version_or_name_is_404(two_versions, viewer_api):
    assert viewer_api.get("/api/definitions/order/versions/9/").status_code == 404
    assert viewer_api.get("/api/definitions/nope/versions/1/").status_code == 404
    assert viewer_api.get("/api/definitions/order/versions/9/diff/").status_code == 404


def test_the_diff_says_what_changed_in_the_steps(two_versions, viewer_api):
    response = viewer_api.get("/api/definitions/order/versions/2/diff/")
    assert response.status_code == 200
    diff = response.json()
    assert (diff["from_version"], diff["to_version"], diff["identical"]) == (1, 2, False)
    assert [(s["name"], s["index"]) for s in diff["steps"]["added"]] == [("create_shipment", 2)]
    assert [s["name"] for s in diff["steps"]["removed"]] == ["send_notification"]
    assert diff["steps"]["changed"] == [{"name": "charge_payment", "fields": {"max_attempts": {"from": 3, "to": 5}}}]
    assert diff["steps"]["moved"] == []
    assert diff["fields"] == {}


def test_the_diff_against_a_named_version_reads_the_other_way(two_versions, viewer_api):
    diff = viewer_api.get("/api/definitions/order/versions/1/diff/?against=2").json()
    assert (diff["from_version"], diff["to_version"]) == (2, 1)
    assert [s["name"] for s in diff["steps"]["added"]] == ["send_notification"]
    assert diff["steps"]["changed"][0]["fields"] == {"max_attempts": {"from": 5, "to": 3}}


def test_the_diff_reports_moved_steps_and_definition_fields(admin_api, viewer_api):
    admin_api.post("/api/definitions/", ORDER, format="json")
    swapped = copy.deepcopy(ORDER)
    swapped["steps"][0], swapped["steps"][1] = swapped["steps"][1], swapped["steps"][0]
    swapped["on_failure"] = "suspend"
    admin_api.post("/api/definitions/", swapped, format="json")
    diff = viewer_api.get("/api/definitions/order/versions/2/diff/").json()
    assert diff["fields"] == {"on_failure": {"from": "compensate", "to": "suspend"}}
    assert diff["steps"]["moved"] == [{"name": "charge_payment", "from": 1, "to": 0},
                                      {"name": "reserve_inventory", "from": 0, "to": 1}]


def test_the_first_version_has_nothing_to_compare_with_by_default(two_versions, viewer_api):
    response = viewer_api.get("/api/definitions/order/versions/1/diff/")
    assert response.status_code == 400
    assert "against" in response.json()
    assert viewer_api.get("/api/definitions/order/versions/1/diff/?against=x").status_code == 400


def test_a_saga_can_start_on_an_older_version(two_versions, operator_api, settings):
    settings.SAGABOARD_ENQUEUE = False
    response = operator_api.post("/api/sagas/", {"definition": "order", "version": 1, "correlation_id": "old"},
                                 format="json")
    assert response.status_code == 201
    assert response.json()["definition_version"] == 1
    assert [s["name"] for s in response.json()["steps"]] == ["reserve_inventory", "charge_payment",
                                                            "send_notification"]
    latest = operator_api.post("/api/sagas/", {"definition": "order", "correlation_id": "new"}, format="json")
    assert latest.json()["definition_version"] == 2


# --- invalid definitions -----------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field_errors"), [
    ({**ORDER, "steps": []}, {"steps": {"non_field_errors": ["a definition needs at least one step"]}}),
    (changed(ORDER, charge_payment={"name": "reserve_inventory"}),
     {"steps": [{}, {"name": ["the step name 'reserve_inventory' is used twice"]}, {}]}),
    (changed(ORDER, charge_payment={"name": " "}), {"steps": [{}, {"name": ["a step needs a name"]}, {}]}),
    (changed(ORDER, charge_payment={"action": "demo.payment.steal"}),
     {"steps": [{}, {"action": ["no Python step handler is registered as 'demo.payment.steal'"]}, {}]}),
    (changed(ORDER, charge_payment={"action": "http://evil.example/charge"}),
     {"steps": [{}, {"action": ["host 'evil.example' is not in SAGABOARD_HTTP_ALLOWLIST (allowed: none)"]}, {}]}),
    (changed(ORDER, charge_payment={"max_attempts": 0, "timeout_seconds": -1}),
     {"steps": [{}, {"max_attempts": ["must be between 1 and 100"],
                     "timeout_seconds": ["must be between 0.1 and 86400"]}, {}]}),
], ids=["no-steps", "duplicate-name", "empty-name", "unknown-handler", "host-not-allowed", "bad-numbers"])
def test_an_invalid_definition_is_refused_with_field_errors_and_nothing_saved(admin_api, settings, body, field_errors):
    settings.SAGABOARD_HTTP_ALLOWLIST = []
    response = admin_api.post("/api/definitions/", body, format="json")
    assert response.status_code == 400
    assert response.json() == field_errors
    assert not Definition.objects.exists() and not DefinitionStep.objects.exists()


# --- import and export -------------------------------------------------------------------------

def test_export_then_import_round_trips(two_versions, admin_api):
    exported = admin_api.get("/api/definitions/export/")
    assert exported.status_code == 200
    [order] = exported.json()
    assert order["version"] == 2
    Definition.objects.all().delete()
    response = admin_api.post("/api/definitions/import/", exported.json(), format="json")
    assert response.status_code == 200
    assert response.json() == {"imported": [{"name": "order", "version": 1, "created": True}]}
    assert admin_api.get("/api/definitions/export/").json() == [{**order, "version": 1}]


def test_importing_what_is_already_there_creates_no_version(two_versions, admin_api):
    exported = admin_api.get("/api/definitions/export/").json()
    response = admin_api.post("/api/definitions/import/", {"definitions": exported}, format="json")
    assert response.json() == {"imported": [{"name": "order", "version": 2, "created": False}]}
    assert Definition.objects.filter(name="order").count() == 2


def test_an_import_with_one_invalid_definition_changes_nothing(two_versions, admin_api):
    good = changed(ORDER, charge_payment={"max_attempts": 9})
    other = {**ORDER, "name": "refund"}
    bad = changed({**ORDER, "name": "broken"}, send_notification={"action": "demo.nothing"})
    before = list(Definition.objects.values_list("name", "version"))
    response = admin_api.post("/api/definitions/import/", [good, other, bad], format="json")
    assert response.status_code == 400
    body = response.json()
    assert "nothing was imported" in body["detail"] and "#3 (broken)" in body["detail"]
    assert body["definitions"][:2] == [{}, {}]
    assert body["definitions"][2] == {"steps": [{}, {}, {"action": [
        "no Python step handler is registered as 'demo.nothing'"]}]}
    assert list(Definition.objects.values_list("name", "version")) == before


def test_an_import_naming_a_definition_twice_is_refused(admin_api):
    response = admin_api.post("/api/definitions/import/", [ORDER, ORDER], format="json")
    assert response.status_code == 400
    assert response.json()["definitions"] == [{}, {"name": ["'order' appears twice in this import"]}]
    assert not Definition.objects.exists()


def test_an_import_that_is_not_a_list_of_definitions_is_refused(admin_api):
    response = admin_api.post("/api/definitions/import/", {"hello": 1}, format="json")
    assert response.status_code == 400 and "expected a list of definitions" in response.json()["detail"]
    response = admin_api.post("/api/definitions/import/", [1], format="json")
    assert response.json()["definitions"] == [{"non_field_errors": ["a definition must be a JSON object"]}]


def test_only_admins_import_but_viewers_export(two_versions, operator_api, viewer_api, anonymous_api):
    assert operator_api.post("/api/definitions/import/", [ORDER], format="json").status_code == 403
    assert anonymous_api.post("/api/definitions/import/", [ORDER], format="json").status_code in (401, 403)
    assert anonymous_api.get("/api/definitions/export/").status_code in (401, 403)
    assert viewer_api.get("/api/definitions/export/").status_code == 200
    assert Definition.objects.filter(name="order").count() == 2


def test_the_demo_definitions_of_every_kind_round_trip(demo_definitions, admin_api):
    exported = admin_api.get("/api/definitions/export/").json()
    assert {d["name"]: d["mode"] for d in exported} == {
        "order-fulfilment": "orchestration", "order-fulfilment-choreography": "choreography",
        "order-fulfilment-http": "orchestration"}
    Definition.objects.all().delete()
    response = admin_api.post("/api/definitions/import/", exported, format="json")
    assert response.status_code == 200, response.json()
    assert admin_api.get("/api/definitions/export/").json() == exported  # each back as version 1
