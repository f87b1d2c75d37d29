"""POST /api/sagas/{id}/actions/{action}/: retry, compensate, resolve, with audit and OperatorAction events."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from sagas.models import Alert, AuditEntry, Saga, SagaEvent, StepAttempt
from tests.drive import advance, saga_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hold_calls")]

VALID = {
    "retry": {"suspended", "failed"},
    "compensate": {"running", "suspended"},
    "resolve": {"suspended", "failed"},
}
STATUSES = ["pending", "running", "suspended", "failed", "completed", "compensated"]


def act(client, saga: Saga, action: str, reason: str | None = "checked by hand"):
    return client.post(f"/api/sagas/{saga.pk}/actions/{action}/", {} if reason is None else {"reason": reason},
                       format="json")


def steps(saga: Saga) -> dict[str, str]:
    return dict(saga.steps.order_by("index").values_list("name", "status"))


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", sorted(VALID))
def test_an_action_is_accepted_only_in_its_statuses(operator_api, status, action):
    saga = saga_in(status)
    before = (saga.version, steps(saga), SagaEvent.objects.filter(saga=saga).count())

    response = act(operator_api, saga, action)

    saga.refresh_from_db()
    if status in VALID[action]:
        assert response.status_code == 200, response.json()
        assert response.json()["status"] == saga.status
        assert saga.version > before[0]
    else:
        assert response.status_code == 409
        assert action in response.json()["detail"] and status in response.json()["detail"]
        assert (saga.version, steps(saga), SagaEvent.objects.filter(saga=saga).count()) == before
        assert not AuditEntry.objects.filter(saga=saga).exists()


def test_it_writes_the_audit_entry_and_an_operator_action_event(operator_api, operator_user):
    saga = saga_in("failed")

    response = act(operator_api, saga, "resolve", "released the stock in the warehouse tool")

    assert response.status_code == 200
    entry = AuditEntry.objects.get(saga=saga)
    assert (entry.user, entry.action, entry.reason, entry.status_before, entry.status_after) == \
        (operator_user, "resolve", "released the stock in the warehouse tool", "failed", "compensated")
    event = SagaEvent.objects.get(saga=saga, type="OperatorAction")
    assert event.data["action"] == "resolve" and event.data["user"] == operator_user.username
    listed = operator_api.get("/api/audit/").json()["results"]
    assert listed[0]["saga_id"] == str(saga.pk) and listed[0]["user"] == operator_user.username


def test_resolve_in_failed_marks_the_step_resolved_and_carries_on_compensating(operator_api):
    saga = saga_in("failed")
    act(operator_api, saga, "resolve")
    saga.refresh_from_db()
    assert saga.status == "compensated"
    assert steps(saga) == {"reserve": "resolved", "charge": "failed", "notify": "skipped"}


def test_retry_in_failed_reruns_the_compensation_with_the_same_key(operator_api):
    saga = saga_in("failed")
    act(operator_api, saga, "retry")
    saga = advance(saga, True)
    assert saga.status == "compensated"
    keys = set(StepAttempt.objects.filter(saga=saga, kind="compensation").values_list("idempotency_key", flat=True))
    assert keys == {f"saga:{saga.pk}:reserve:compensation"}
    assert StepAttempt.objects.filter(saga=saga, kind="compensation").count() == 2


def test_retry_in_suspended_runs_the_step_again_with_a_fresh_budget(operator_api):
    saga = saga_in("suspended")
    response = act(operator_api, saga, "retry")
    assert response.json()["status"] == "running"
    saga = advance(saga, True, True)
    assert saga.status == "completed"
    numbers = list(StepAttempt.objects.filter(saga=saga, step__name="charge").order_by("number")
                   .values_list("number", "status"))
    assert numbers == [(1, "failed"), (2, "succeeded")]


def test_resolve_in_suspended_goes_forward(operator_api):
    saga = saga_in("suspended")
    act(operator_api, saga, "resolve")
    saga = advance(saga, True)
    assert saga.status == "completed"
    assert steps(saga) == {"reserve": "succeeded", "charge": "resolved", "notify": "succeeded"}


def test_compensate_in_running_stops_going_forward(operator_api):
    saga = saga_in("running")
    response = act(operator_api, saga, "compensate")
    assert response.json()["status"] == "compensating"
    saga = advance(saga, True)
    assert saga.status == "compensated"
    assert steps(saga) == {"reserve": "compensated", "charge": "skipped", "notify": "skipped"}


def test_alerts_close_when_the_saga_leaves_the_status(operator_api):
    saga = saga_in("failed")
    assert list(Alert.objects.filter(saga=saga).values_list("severity", "open")) == [("CRITICAL", True)]
    act(operator_api, saga, "resolve")
    assert list(Alert.objects.filter(saga=saga).values_list("severity", "open")) == [("CRITICAL", False)]


@pytest.mark.parametrize("body, message", [
    ({}, "reason"),
    ({"reason": ""}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": 12}, None),
])
def test_an_action_without_a_reason_is_refused_and_changes_nothing(operator_api, body, message):
    saga = saga_in("failed")
    response = operator_api.post(f"/api/sagas/{saga.pk}/actions/resolve/", body, format="json")
    saga.refresh_from_db()
    if message:
        assert response.status_code == 400 and message in response.json()
        assert saga.status == "failed"


def test_unknown_actions_and_ids_are_answered_clearly(operator_api):
    saga = saga_in("failed")
    assert act(operator_api, saga, "explode").status_code == 404
    assert "unknown action" in act(operator_api, saga, "explode").json()["detail"]
    assert operator_api.post("/api/sagas/not-a-uuid/actions/retry/", {"reason": "x"}, format="json").status_code == 404
    missing = "00000000-0000-0000-0000-000000000000"
    assert operator_api.post(f"/api/sagas/{missing}/actions/retry/", {"reason": "x"}, format="json").status_code == 404


def test_a_viewer_cannot_act(viewer_api):
    saga = saga_in("failed")
    assert act(viewer_api, saga, "resolve").status_code == 403
    saga.refresh_from_db()
    assert saga.status == "failed"


def race(user, saga: Saga, actions: tuple[str, str]) -> list[int]:
    """Two operators send their actions at the same instant, each on a connection of its own."""
    barrier = threading.Barrier(len(actions))
    codes: list[int] = []

    def go(action: str) -> None:
        client = APIClient()
        client.force_authenticate(user)
        barrier.wait()
        try:
            codes.append(act(client, saga, action).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


@pytest.mark.django_db(transaction=True)
def test_two_operators_at_once_exactly_one_wins(operator_user):
    for round_number in range(5):
        saga = saga_in("failed", correlation_id=f"race-{round_number}")
        codes = race(operator_user, saga, ("retry", "resolve"))
        assert sorted(codes) == [200, 409], codes
        assert AuditEntry.objects.filter(saga=saga).count() == 1
