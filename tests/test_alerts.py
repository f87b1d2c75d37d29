"""Alerts: raised once per entry into failed/suspended, acknowledged, closed; email and webhook out."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.core import mail

from sagas import alerts, tasks
from sagas.models import Alert
from tests.drive import saga_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hold_calls")]


def test_failed_raises_one_critical_and_suspended_one_warning(viewer_api):
    failed = saga_in("failed")
    suspended = saga_in("suspended")
    body = viewer_api.get("/api/alerts/", {"open": "true"}).json()["results"]
    assert [(a["saga_id"], a["severity"], a["open"]) for a in body] == [
        (str(suspended.pk), "WARNING", True), (str(failed.pk), "CRITICAL", True)]
    assert "compensation failed" in body[1]["message"] and body[1]["acknowledged_by"] is None


def test_a_raised_alert_is_logged_at_its_level_once_committed(caplog, django_capture_on_commit_callbacks,
                                                              monkeypatch):
    notified = []
    monkeypatch.setattr(alerts, "_notify", notified.append)  # no task to the broker from here
    with django_capture_on_commit_callbacks(execute=True):
        failed = saga_in("failed", correlation_id="logged-critical")
        suspended = saga_in("suspended", correlation_id="logged-warning")

    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "sagas.alerts"]
    critical, warning = failed.alerts.get(), suspended.alerts.get()
    assert logged == [("CRITICAL", f"{critical.message.removeprefix('CRITICAL: ')} (alert {critical.pk})"),
                      ("WARNING", f"{warning.message.removeprefix('WARNING: ')} (alert {warning.pk})")]
    assert logged[0][1].startswith("saga ")
    assert notified == [critical.pk, warning.pk]


def test_an_operator_acknowledges(operator_api, operator_user):
    alert = saga_in("failed").alerts.get()
    response = operator_api.post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == operator_user.username
    alert.refresh_from_db()
    assert alert.acknowledged_by == operator_user and alert.acknowledged_at and alert.open
    assert operator_api.post("/api/alerts/999999/acknowledge/").status_code == 404
    assert operator_api.post("/api/alerts/x/acknowledge/").status_code == 404


def test_open_filter_must_be_a_boolean(viewer_api):
    assert viewer_api.get("/api/alerts/", {"open": "maybe"}).status_code == 400


def test_the_alert_is_emailed(settings):
    settings.SAGABOARD_ALERT_EMAILS = ["oncall@example.com"]
    settings.SAGABOARD_ALERT_WEBHOOK = ""
    alert = saga_in("failed").alerts.get()
    tasks.notify_alert(alert.pk)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["oncall@example.com"]
    assert "CRITICAL" in mail.outbox[0].subject and str(alert.saga_id) in mail.outbox[0].body


class Sink:
    """A local HTTP server that records JSON POSTs and answers with the given status codes in turn."""

    def __init__(self, statuses: list[int]):
        self.bodies: list[dict] = []
        self.statuses = list(statuses)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                sink.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(sink.statuses.pop(0) if sink.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()


def test_the_webhook_posts_the_alert_and_raises_on_an_error_so_celery_retries(settings):
    sink = Sink([500, 200])
    settings.SAGABOARD_ALERT_WEBHOOK = sink.url
    try:
        alert = saga_in("failed").alerts.get()
        with pytest.raises(httpx.HTTPStatusError):
            tasks.post_alert_webhook.run(alert.pk)
        tasks.post_alert_webhook.run(alert.pk)
    finally:
        sink.close()
    assert len(sink.bodies) == 2
    assert sink.bodies[-1]["severity"] == "CRITICAL" and sink.bodies[-1]["saga_id"] == str(alert.saga_id)
    assert sink.bodies[-1]["status"] == "failed"


def test_alert_rows_are_not_duplicated_by_a_second_look(viewer_api):
    saga = saga_in("failed")
    assert Alert.objects.filter(saga=saga).count() == 1
    assert viewer_api.get("/api/alerts/").json()["count"] == 1
