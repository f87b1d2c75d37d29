"""The definitions admin: who gets in, saving as a new version, validation, ordering, deleting, comparing.

The last test drives the admin in real Chromium against `manage.py standalone`; it never touches
the ORM (Playwright's event loop would refuse it), only HTTP.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from sagas import definitions, services
from sagas.models import Definition
from tests.browser_support import CHROMIUM_ARGS, Server
from tests.conftest import make_user

ORDER = {
    "name": "order",
    "steps": [
        {"name": "reserve_inventory", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release"},
        {"name": "charge_payment", "action": "demo.payment.charge", "compensation": "demo.payment.refund"},
        {"name": "send_notification", "action": "demo.notification.send"},
    ],
}


@pytest.fixture
def order(db) -> Definition:
    definition, _ = definitions.save_version(ORDER)
    return definition


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def change_url(definition: Definition) -> str:
    return f"/admin/sagas/definition/{definition.pk}/change/"


def form_data(definition: Definition | None, steps: list[dict], **fields) -> dict:
    """The POST of the admin change form: the definition's fields and the steps inline."""
    initial = [s for s in steps if s.get("id")]
    data = {"mode": "orchestration", "on_failure": "compensate", "description": "", **fields,
            "steps-TOTAL_FORMS": len(steps), "steps-INITIAL_FORMS": len(initial), "steps-MIN_NUM_FORMS": 0,
            "steps-MAX_NUM_FORMS": 1000}
    for i, step in enumerate(steps):
        row = {"id": "", "index": i, "compensation": "", "max_attempts": 3, "backoff_seconds": 0.5,
               "timeout_seconds": 30, **step}
        if definition is not None:
            row["definition"] = definition.pk
        for key, value in row.items():
            if key == "compensate_on_failure" and not value:
                continue
            if key == "DELETE":
                value = "on"
            data[f"steps-{i}-{key}"] = "" if value is None else value
    return data


def current_steps(definition: Definition) -> list[dict]:
    return [{"id": s.pk, "index": s.index, "name": s.name, "action": s.action, "compensation": s.compensation,
             "max_attempts": s.max_attempts, "backoff_seconds": s.backoff_seconds, "timeout_seconds": s.timeout_seconds}
            for s in definition.steps.all()]


def step_names(definition: Definition) -> list[str]:
    return list(definition.steps.values_list("name", flat=True))


# --- who gets in -------------------------------------------------------------------------------

def test_an_admin_group_member_logs_in_to_the_admin_without_the_staff_flag(admin_user, order):
    assert not admin_user.is_staff
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": admin_user.username, "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    page = client.get("/admin/sagas/definition/")
    assert page.status_code == 200 and "order" in page.content.decode()


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_operators_and_viewers_are_kept_out(django_user_model, order, role):
    user = make_user(django_user_model, f"{role}-1", role)
    client = Client()
    response = client.post("/admin/login/", {"username": user.username, "password": "pw"})
    assert response.status_code == 200 and "Please enter the correct" in response.content.decode()
    client.force_login(user)
    assert client.get("/admin/sagas/definition/").status_code == 302  # to the login page
    assert client.get(change_url(order)).status_code == 302


def test_a_superuser_gets_in(django_user_model, order):
    client = Client()
    client.force_login(make_user(django_user_model, "root", None, superuser=True))
    assert client.get(change_url(order)).status_code == 200


# --- saving makes a new version ----------------------------------------------------------------

def test_saving_a_change_makes_version_2_and_sagas_keep_version_1(admin_client, order, admin_user):
    saga, _ = services.start_saga(order, {}, "before-the-edit")
    steps = current_steps(order)
    steps[1]["max_attempts"] = 7
    steps[2]["action"] = "demo.shipping.create"
    response = admin_client.post(change_url(order), form_data(order, steps, description="v2", _continue="1"),
                                 follow=True)
    assert response.status_code == 200
    latest = definitions.latest("order")
    assert latest.version == 2 and latest.created_by == admin_user and latest.description == "v2"
    assert list(latest.steps.values_list("name", "action", "max_attempts")) == [
        ("reserve_inventory", "demo.inventory.reserve", 3), ("charge_payment", "demo.payment.charge", 7),
        ("send_notification", "demo.shipping.create", 3)]
    assert response.redirect_chain[-1][0] == change_url(latest)
    assert "Saved order as version 2" in response.content.decode()
    order.refresh_from_db()
    assert list(order.steps.values_list("max_attempts", flat=True)) == [3, 3, 3]
    saga.refresh_from_db()
    assert (saga.definition_id, saga.definition_version) == (order.pk, 1)
    assert list(saga.steps.values_list("action", flat=True))[2] == "demo.notification.send"


def test_saving_without_a_change_makes_no_version(admin_client, order):
    response = admin_client.post(change_url(order), form_data(order, current_steps(order)), follow=True)
    assert "Nothing changed: order stays at version 1" in response.content.decode()
    assert Definition.objects.filter(name="order").count() == 1


def test_steps_are_reordered_by_their_index(admin_client, order):
    steps = current_steps(order)
    steps[0]["index"], steps[1]["index"] = 1, 0  # swap the first two
    admin_client.post(change_url(order), form_data(order, steps))
    assert step_names(definitions.latest("order")) == ["charge_payment", "reserve_inventory", "send_notification"]
    assert list(definitions.latest("order").steps.values_list("index", flat=True)) == [0, 1, 2]


def test_a_step_is_added_and_another_deleted(admin_client, order):
    steps = current_steps(order)
    steps[2]["DELETE"] = True
    steps.append({"index": "", "name": "create_shipment", "action": "demo.shipping.create",
                  "compensation": "demo.shipping.cancel"})
    admin_client.post(change_url(order), form_data(order, steps))
    assert step_names(definitions.latest("order")) == ["reserve_inventory", "charge_payment", "create_shipment"]


def test_adding_a_definition_saves_version_1(admin_client):
    response = admin_client.post("/admin/sagas/definition/add/", form_data(None, ORDER["steps"], name="refund"),
                                 follow=True)
    assert "Saved refund as version 1" in response.content.decode()
    assert step_names(definitions.latest("refund")) == ["reserve_inventory", "charge_payment", "send_notification"]


# --- invalid definitions -----------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({1: {"name": "reserve_inventory"}}, "the step name &#x27;reserve_inventory&#x27; is used twice"),
    ({1: {"action": "demo.payment.steal"}}, "no Python step handler is registered as &#x27;demo.payment.steal&#x27;"),
    ({1: {"compensation": "http://evil.example/refund"}},
     "host &#x27;evil.example&#x27; is not in SAGABOARD_HTTP_ALLOWLIST"),
    ({1: {"max_attempts": 0}}, "must be between 1 and 100"),
    ({1: {"index": 0}}, "the index 0 is used by another step"),
    ({0: {"DELETE": True}, 1: {"DELETE": True}, 2: {"DELETE": True}}, "a definition needs at least one step"),
], ids=["duplicate-name", "unknown-handler", "host-not-allowed", "bad-number", "duplicate-index", "no-steps"])
def test_an_invalid_change_is_refused_with_the_error_and_nothing_saved(admin_client, order, settings, change, message):
    settings.SAGABOARD_HTTP_ALLOWLIST = []
    steps = current_steps(order)
    for index, fields in change.items():
        steps[index].update(fields)
    response = admin_client.post(change_url(order), form_data(order, steps))
    assert response.status_code == 200  # the form again, with its errors
    assert message in response.content.decode()
    assert Definition.objects.filter(name="order").count() == 1
    assert step_names(order) == ["reserve_inventory", "charge_payment", "send_notification"]


@pytest.fixture
def choreography(db) -> Definition:
    from sagas.demo.definitions import ORDER_FULFILMENT_CHOREOGRAPHY

    definition, _ = definitions.save_version(ORDER_FULFILMENT_CHOREOGRAPHY)
    return definition


def choreography_steps(definition: Definition) -> list[dict]:
    return [{**step, "on": s.on, "emits": s.emits, "emits_on_failure": s.emits_on_failure,
             "compensate_on": json.dumps(s.compensate_on)}
            for step, s in zip(current_steps(definition), definition.steps.all(), strict=True)]


def test_a_choreography_keeps_its_events_in_the_new_version(admin_client, choreography):
    steps = choreography_steps(choreography)
    steps[3]["max_attempts"] = 4
    admin_client.post(change_url(choreography), form_data(choreography, steps, mode="choreography"))
    latest = definitions.latest(choreography.name)
    assert latest.version == 2
    assert definitions.diff(choreography, latest)["steps"]["changed"] == [
        {"name": "send_notification", "fields": {"max_attempts": {"from": 3, "to": 4}}}]


def test_a_choreography_whose_events_make_no_flow_is_refused(admin_client, choreography):
    steps = choreography_steps(choreography)
    steps[1]["on"] = ""
    response = admin_client.post(change_url(choreography), form_data(choreography, steps, mode="choreography"))
    assert "a choreography step needs the event it reacts to" in response.content.decode()
    assert Definition.objects.filter(name=choreography.name).count() == 1


# --- deleting ----------------------------------------------------------------------------------

def test_a_definition_with_sagas_cannot_be_deleted(admin_client, order):
    services.start_saga(order, {}, "keeps-it")
    response = admin_client.post(f"/admin/sagas/definition/{order.pk}/delete/", {"post": "yes"}, follow=True)
    assert "v1 cannot be deleted: 1 saga(s) ran on it" in response.content.decode()
    assert Definition.objects.filter(pk=order.pk).exists()


def test_a_definition_without_sagas_can_be_deleted(admin_client, order):
    admin_client.post(f"/admin/sagas/definition/{order.pk}/delete/", {"post": "yes"})
    assert not Definition.objects.filter(pk=order.pk).exists()


# --- graph and versions ------------------------------------------------------------------------

def test_the_change_page_shows_the_graph_and_the_versions(admin_client, order):
    steps = current_steps(order)
    steps[0]["max_attempts"] = 5
    admin_client.post(change_url(order), form_data(order, steps))
    page = admin_client.get(change_url(order)).content.decode()
    assert 'id="step&#45;reserve_inventory"' in page and "<svg" in page
    assert "This is <strong>order version 1</strong> (the latest is version 2)" in page
    assert "compare with v2" in page


def test_the_compare_page_lists_what_changed(admin_client, order):
    steps = current_steps(order)
    steps[1]["max_attempts"] = 5
    steps[2]["DELETE"] = True
    admin_client.post(change_url(order), form_data(order, steps))
    latest = definitions.latest("order")
    page = admin_client.get(f"/admin/sagas/definition/{latest.pk}/compare/?against=1").content.decode()
    assert "From version 1 to version 2" in page
    assert "step charge_payment</td><td>max_attempts changed</td><td>3</td><td>5</td>" in page
    assert "step send_notification</td><td>removed" in page


# --- in a browser ------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_an_admin_edits_a_step_in_the_browser_and_running_sagas_keep_their_version(tmp_path):
    server = Server(tmp_path)
    try:
        server.manage("shell", "-c", "from django.contrib.auth.models import User; "
                                     "User.objects.create_superuser('root', 'root@example.com', 'pw')")
        running = server.start({"sleep": {"charge_payment": 20}}, "started-before-the-edit")  # time to edit
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{server.url}/admin/")
            page.get_by_label("Username").fill("root")
            page.get_by_label("Password").fill("pw")
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("link", name="Definitions").click()
            page.get_by_role("link", name="order-fulfilment", exact=True).first.click()
            expect(page.locator("#version-note")).to_contain_text("order-fulfilment version 1")
            expect(page.locator(".field-graph_preview svg")).to_be_visible()
            notification = page.locator("input[value='send_notification']")
            row = page.locator("tr.form-row", has=notification)
            row.locator("input[name$='-max_attempts']").fill("5")
            page.get_by_role("button", name="Save and continue editing").click()
            expect(page.locator(".messagelist")).to_contain_text("Saved order-fulfilment as version 2")
            expect(page.locator("#version-note")).to_contain_text("order-fulfilment version 2")
            # The edit happened while the first saga was still on its way.
            assert server.api("GET", f"/api/sagas/{running['id']}/").json()["status"] == "running"
            page.get_by_role("link", name="compare with v1").click()
            expect(page.locator("#diff")).to_contain_text("max_attempts changed")
            browser.close()
        finished = server.wait_status(running["id"], {"completed"}, timeout=60)
        assert finished["definition_version"] == 1
        assert [s["max_attempts"] for s in finished["steps"]] == [3, 3, 3, 3]
        fresh = server.wait_status(server.start({}, "started-after-the-edit")["id"], {"completed"}, timeout=60)
        assert fresh["definition_version"] == 2
        assert [s["max_attempts"] for s in fresh["steps"]] == [3, 3, 3, 5]
        versions = server.api("GET", "/api/definitions/order-fulfilment/", user="ada").json()["versions"]
        assert [(v["version"], v["created_by"]) for v in versions] == [(2, "root"), (1, None)]
    finally:
        server.stop()
