"""The dashboard pages: who may see them, what they show, the operator's buttons, and constant queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from sagas import definitions, services
from sagas.models import Alert, SagaEvent, SagaStep, StepAttempt
from tests.drive import advance

PAGES = ["/", "/sagas/", "/definitions/", "/definitions/order-fulfilment/", "/alerts/"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_saga(definition, n: int, status: str = "failed", attempts: int = 2):
    """A saga as the engine leaves it after a failed compensation, written directly for speed."""
    saga, _ = services.start_saga(definition, {"order_id": f"o-{n}"}, f"page-{n}")
    now = timezone.now()
    saga.__class__.objects.filter(pk=saga.pk).update(
        status=status, current_step="charge_payment", finished_at=now, version=9,
        error="reserve_inventory compensation attempt 3: the warehouse refused the release")
    steps = {s.name: s for s in SagaStep.objects.filter(saga=saga)}
    SagaStep.objects.filter(pk=steps["reserve_inventory"].pk).update(status="compensation_failed")
    SagaStep.objects.filter(pk=steps["charge_payment"].pk).update(status="failed")
    for number in range(1, attempts + 1):
        StepAttempt.objects.create(saga=saga, step=steps["charge_payment"], kind="action", number=number, status="failed",
                                   idempotency_key=f"saga:{saga.pk}:charge_payment:action", started_at=now,
                                   finished_at=now + timedelta(milliseconds=40), lease_expires_at=now,
                                   error="card declined", traceback="Traceback (most recent call last):\n  boom")
    for seq in range(2, 6):
        SagaEvent.objects.create(saga=saga, seq=seq, type="StepFailed", step="charge_payment", at=now,
                                 data={"error": "card declined"})
    Alert.objects.create(saga=saga, severity="CRITICAL", message=f"saga {saga.pk} needs a person")
    saga.refresh_from_db()
    return saga


@pytest.fixture
def saga(demo_definitions):
    return make_saga(demo_definitions, 1)


@pytest.mark.parametrize("path", PAGES)
def test_it_renders_each_page_for_a_viewer(viewer_user, saga, path):
    response = client_for(viewer_user).get(path)

    assert response.status_code == 200
    assert b"<h1" in response.content


def test_it_renders_the_saga_page_for_a_viewer(viewer_user, saga):
    response = client_for(viewer_user).get(f"/sagas/{saga.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="step&#45;charge_payment"' in html and "status&#45;failed" in html  # the inlined graph
    assert "card declined" in html and "<details><summary>Traceback</summary>" in html
    assert f"saga:{saga.pk}:charge_payment:action" in html
    assert "40 ms" in html
    assert "StepFailed" in html
    assert "&quot;order_id&quot;: &quot;o-1&quot;" in html  # the context, pretty


@pytest.mark.parametrize("path", PAGES + ["/sagas/00000000-0000-0000-0000-000000000000/"])
def test_it_sends_anonymous_users_to_the_login_page(client, db, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_it_forbids_a_user_without_a_role(django_user_model, saga, path):
    nobody = django_user_model.objects.create_user("nobody", password="pw")

    assert client_for(nobody).get(path).status_code == 403


def test_the_login_page_renders_with_labels(client, db):
    response = client.get("/accounts/login/")

    assert response.status_code == 200
    assert b'<label for="id_username">' in response.content and b'<label for="id_password">' in response.content


def test_a_viewer_sees_no_action_buttons(viewer_user, saga):
    html = client_for(viewer_user).get(f"/sagas/{saga.pk}/").content.decode()

    assert "data-action=" not in html
    assert "<dialog" not in html


def test_an_operator_sees_the_actions_valid_for_a_failed_saga(operator_user, saga):
    html = client_for(operator_user).get(f"/sagas/{saga.pk}/").content.decode()

    assert '<dialog id="action-dialog"' in html
    assert 'data-action="retry"' in html and 'data-action="resolve"' in html
    # compensate is not valid for a failed saga: rendered hidden, shown live if the status allows it
    compensate = html[html.index('data-action="compensate"'):]
    assert compensate[:compensate.index(">")].rstrip().endswith("hidden")
    retry = html[html.index('data-action="retry"'):]
    assert "hidden" not in retry[:retry.index(">")]


def test_alerts_have_an_acknowledge_button_for_operators_only(operator_user, viewer_user, saga):
    assert b'class="ack"' in client_for(operator_user).get("/alerts/").content
    assert b'class="ack"' not in client_for(viewer_user).get("/alerts/").content


def test_the_overview_shows_the_failure_inbox_linking_to_the_saga(viewer_user, saga):
    html = client_for(viewer_user).get("/").content.decode()

    assert "1 open CRITICAL" in html
    assert f'href="/sagas/{saga.pk}/"' in html
    assert 'data-status="failed"' in html
    # The row names the saga in its link; its text is the cause, what the person on call needs first.
    assert saga.error
    row = html[html.index(f'href="/sagas/{saga.pk}/"'):]
    assert row.index(saga.error) < row.index("</li>")


def test_the_overview_answers_its_live_region_alone(viewer_user, saga):
    response = client_for(viewer_user).get("/?part=live")

    assert response.status_code == 200
    assert b"<html" not in response.content and b"Failure inbox" in response.content
    assert client_for(viewer_user).get("/?part=nonsense").status_code == 404


def test_the_saga_list_filters_by_status_definition_correlation_id_and_search(viewer_user, demo_definitions):
    failed = make_saga(demo_definitions, 1)
    completed = make_saga(demo_definitions, 2, status="completed")
    client = client_for(viewer_user)

    def ids(query: str) -> set[str]:
        html = client.get(f"/sagas/?{query}").content.decode()
        return {str(s.pk) for s in (failed, completed) if f'id="saga-{s.pk}"' in html}

    assert ids("") == {str(failed.pk), str(completed.pk)}
    assert ids("status=failed") == {str(failed.pk)}
    assert ids("definition=order-fulfilment&status=completed") == {str(completed.pk)}
    assert ids("definition=other") == set()
    assert ids("correlation_id=page-2") == {str(completed.pk)}
    assert ids("search=page-1") == {str(failed.pk)}
    assert ids(f"search={str(completed.pk)[:8]}") == {str(completed.pk)}
    assert b"unknown status" in client.get("/sagas/?status=exploded").content


def test_the_definition_page_shows_per_step_statistics(viewer_user, saga):
    html = client_for(viewer_user).get("/definitions/order-fulfilment/").content.decode()

    row = html[html.index("2. charge_payment"):]
    row = row[:row.index("</tr>")]
    assert ">2<" in row  # two attempts
    assert "0.0 %" in row  # none succeeded
    assert "40 ms" in row  # mean duration
    assert "1 failed" in row  # the step's outcome over sagas


# --- constant queries -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_with_a_constant_number_of_queries(viewer_user, demo_definitions, path,
                                                             django_assert_max_num_queries):
    client = client_for(viewer_user)
    make_saga(demo_definitions, 0)
    client.get(path)  # warm up: session and permissions
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get(path).status_code == 200
    for n in range(1, 25):
        make_saga(demo_definitions, n)

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(path).status_code == 200


def test_the_saga_page_renders_with_a_constant_number_of_queries(operator_user, demo_definitions,
                                                                 django_assert_max_num_queries):
    client = client_for(operator_user)
    small = make_saga(demo_definitions, 1, attempts=1)
    big = make_saga(demo_definitions, 2, attempts=30)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(f"/sagas/{small.pk}/")

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(f"/sagas/{big.pk}/").status_code == 200
    assert len(few.captured_queries) <= 10


def test_the_saga_page_still_renders_when_dot_is_missing(viewer_user, saga, monkeypatch):
    from sagas.graph import render_svg

    monkeypatch.setenv("PATH", "/nonexistent")
    render_svg.cache_clear()
    try:
        response = client_for(viewer_user).get(f"/sagas/{saga.pk}/")
    finally:
        render_svg.cache_clear()

    assert response.status_code == 200
    assert b"The graph cannot be drawn" in response.content
    assert b"card declined" in response.content


# --- a choreography's flow: events observed over expected ----------------------------------------

CHOREOGRAPHY = "order-fulfilment-choreography"
FLOW_ROW = re.compile(r'<tr id="flow-event-(\w+)" data-event="\w+" class="flow-event state-(\w+)"')


def choreography_saga(correlation_id: str, *outcomes: bool):
    """A choreography started by its OrderCreated, then its due calls run with these outcomes (no worker)."""
    saga, _ = services.start_saga(definitions.latest(CHOREOGRAPHY), {}, correlation_id)
    services.publish_event(saga.pk)
    return advance(saga, *outcomes)


def flow_rows(content: bytes) -> list[tuple[str, str]]:
    return FLOW_ROW.findall(content.decode())


def test_a_choreography_page_lists_the_expected_events_and_marks_the_observed_ones(viewer_user, operator_api,
                                                                                    demo_definitions, hold_calls):
    saga = choreography_saga("flow-page", True)  # OrderCreated, then the inventory is reserved
    operator_api.post("/api/events/", {"definition": CHOREOGRAPHY, "correlation_id": "flow-page",
                                       "type": "ShipmentCreated", "source": "warehouse", "id": "s-1"}, format="json")

    response = client_for(viewer_user).get(f"/sagas/{saga.pk}/")

    assert response.status_code == 200
    assert flow_rows(response.content) == [
        ("OrderCreated", "observed"), ("InventoryReserved", "observed"), ("PaymentProcessed", "waiting"),
        ("PaymentFailed", "waiting"), ("ShipmentCreated", "held"), ("ShipmentFailed", "failure"),
        ("CustomerNotified", "missing")]
    text = response.content.decode()
    assert "Waiting for <b class=\"mono\">PaymentProcessed, PaymentFailed</b>" in text
    assert "Held (arrived early): <b class=\"mono\">ShipmentCreated</b>" in text
    assert "✓ observed" in text and "held: arrived early" in text and "missing" in text
    assert "waited too long" not in text
    drawn = text.replace("&#45;", "-")  # dot writes "-" in ids as an entity
    assert 'id="event-InventoryReserved-reserve_inventory-charge_payment" class="edge event observed"' in drawn
    assert 'id="event-PaymentProcessed-charge_payment-create_shipment" class="edge event expected"' in drawn


def test_a_choreography_page_flags_a_flow_that_waited_too_long(viewer_user, demo_definitions, hold_calls):
    saga = choreography_saga("flow-late")
    services.recover(timezone.now() + timedelta(seconds=61))

    response = client_for(viewer_user).get(f"/sagas/{saga.pk}/?part=flow")

    text = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in text  # the live region alone
    assert 'id="flow-late">waited too long: over 60 s' in text
    assert ("InventoryReserved", "waiting") in flow_rows(response.content)


def test_a_compensated_choreography_page_says_what_was_never_published(viewer_user, demo_definitions, hold_calls):
    saga = choreography_saga("flow-compensated", True, False, True)  # payment fails, the inventory is released
    assert saga.status == "compensated"

    response = client_for(viewer_user).get(f"/sagas/{saga.pk}/")

    assert dict(flow_rows(response.content)) == {
        "OrderCreated": "observed", "InventoryReserved": "observed", "PaymentProcessed": "unpublished",
        "PaymentFailed": "observed", "ShipmentCreated": "unpublished", "ShipmentFailed": "unpublished",
        "CustomerNotified": "unpublished"}
    assert b"Nothing more expected: the flow ended compensated." in response.content


def test_an_orchestration_page_has_no_flow_panel(viewer_user, saga):
    response = client_for(viewer_user).get(f"/sagas/{saga.pk}/")

    assert response.status_code == 200
    assert b'id="flow"' not in response.content and not flow_rows(response.content)
    assert client_for(viewer_user).get(f"/sagas/{saga.pk}/?part=flow").status_code == 404


def test_a_choreography_page_renders_with_a_constant_number_of_queries(viewer_user, demo_definitions, hold_calls,
                                                                       django_assert_max_num_queries):
    client = client_for(viewer_user)
    small = choreography_saga("flow-small")
    big = choreography_saga("flow-big", True, True, True, True)  # every step done: a longer log, more rows
    assert big.status == "completed"
    client.get(f"/sagas/{small.pk}/")  # warm up: session and permissions
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(f"/sagas/{small.pk}/")

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(f"/sagas/{big.pk}/")
    assert [state for _, state in flow_rows(response.content)].count("observed") == 5
    assert len(few.captured_queries) <= 14
