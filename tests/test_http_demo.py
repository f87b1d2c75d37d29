"""The demo's own HTTP services (/demo/services/): the effects ledger, fault injection, and the HTTP demo
saga through a real worker and in standalone mode."""

from __future__ import annotations

import io
import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.test import Client, RequestFactory

from sagas import definitions
from sagas.demo.definitions import order_fulfilment_http
from sagas.logfilters import QuietInjectedFailures
from sagas.models import Effect
from tests.http_sagas import attempts, start, wait_resting

# --- the demo services over HTTP ---------------------------------------------------------------

class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def sagaboard_server(settings):
    """This sagaboard's own web app on 127.0.0.1 (a free port), in a thread: where the demo services live."""
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="sagaboard-server", daemon=True)
    thread.start()
    settings.SAGABOARD_PUBLIC_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.SAGABOARD_HTTP_ALLOWLIST = []
    yield settings.SAGABOARD_PUBLIC_URL
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_loaddemo_creates_the_http_demo_calling_sagaboards_own_services(settings):
    settings.SAGABOARD_HTTP_ALLOWLIST = []
    call_command("loaddemo", stdout=io.StringIO())
    definition = definitions.latest("order-fulfilment-http")
    steps = list(definition.steps.values_list("name", "action", "compensation"))
    base = f"{settings.SAGABOARD_PUBLIC_URL}/demo/services"
    assert steps == [
        ("reserve_inventory", f"{base}/inventory/reserve/", f"{base}/inventory/release/"),
        ("charge_payment", f"{base}/payment/charge/", f"{base}/payment/refund/"),
        ("create_shipment", f"{base}/shipping/create/", f"{base}/shipping/cancel/"),
        ("send_notification", f"{base}/notification/send/", ""),
    ]


def demo_call(client, path: str, key: str | None = "saga:s-1:charge_payment:action", **body):
    headers = {"Idempotency-Key": key} if key else {}
    payload = {"saga_id": "s-1", "correlation_id": "order-9", "step": "charge_payment", "attempt": 1,
               "context": {}, **body}
    return client.post(path, data=json.dumps(payload), content_type="application/json", headers=headers)


@pytest.mark.django_db
def test_a_demo_service_records_one_effect_per_idempotency_key():
    client = Client(enforce_csrf_checks=True)  # the engine has no session and no CSRF token
    first = demo_call(client, "/demo/services/payment/charge/")
    again = demo_call(client, "/demo/services/payment/charge/", attempt=2)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == {"payment_id": "p-s-1"}
    assert list(Effect.objects.values_list("idempotency_key", "service", "operation", "correlation_id")) == [
        ("saga:s-1:charge_payment:action", "payment", "charge", "order-9")]


@pytest.mark.django_db
def test_a_demo_service_obeys_fault_injection_with_a_503(caplog):
    client = Client()
    failing = demo_call(client, "/demo/services/payment/charge/", context={"fail": {"charge_payment": 1}})
    assert failing.status_code == 503 and "failed on purpose" in failing.json()["error"]
    # On purpose, so not an ERROR in the server's log (the engine records it in the attempt).
    assert not [r for r in caplog.records if r.name == "django.request"]
    assert not Effect.objects.exists()
    assert demo_call(client, "/demo/services/payment/charge/", attempt=2,
                     context={"fail": {"charge_payment": 1}}).status_code == 200
    refund = demo_call(client, "/demo/services/payment/refund/", key="saga:s-1:charge_payment:compensation",
                       context={"fail_compensation": {"charge_payment": "always"}})
    assert refund.status_code == 503


@pytest.mark.django_db
def test_a_demo_service_takes_only_a_post_with_a_key_and_a_json_object():
    client = Client()
    assert client.get("/demo/services/payment/charge/").status_code == 405
    assert demo_call(client, "/demo/services/payment/charge/", key=None).status_code == 400
    assert demo_call(client, "/demo/services/payment/steal/").status_code == 404
    assert client.post("/demo/services/payment/charge/", data="[1]", content_type="application/json",
                       headers={"Idempotency-Key": "k"}).status_code == 400
    assert not Effect.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.parametrize(("context", "status", "effects"), [
    ({}, "completed", {"inventory.reserve", "payment.charge", "shipping.create", "notification.send"}),
    ({"fail": {"charge_payment": 2}}, "completed",
     {"inventory.reserve", "payment.charge", "shipping.create", "notification.send"}),
    ({"fail": {"create_shipment": "always"}}, "compensated",
     {"inventory.reserve", "payment.charge", "payment.refund", "inventory.release"}),
], ids=["happy", "retried", "compensated"])
def test_the_http_demo_runs_through_the_worker(celery_worker_process, sagaboard_server, context, status, effects):
    data = order_fulfilment_http(sagaboard_server)
    correlation_id = f"http-demo-{status}-{len(context)}"
    saga = wait_resting(start(data, context, correlation_id), celery_worker_process)
    assert saga.status == status
    recorded = Effect.objects.filter(correlation_id=correlation_id)
    assert {f"{e.service}.{e.operation}" for e in recorded} == effects
    assert recorded.count() == len(effects)  # retried calls recorded nothing twice
    charge = attempts(saga, "charge_payment")
    assert charge[-1][1:3] == ("succeeded", 200)
    if context.get("fail", {}).get("charge_payment") == 2:
        assert [row[2] for row in charge] == [503, 503, 200]
        assert "failed on purpose" in charge[0][3]


@pytest.mark.slow
def test_the_http_demo_completes_in_standalone_mode_calling_its_own_server(tmp_path):
    """What `make run` shows: the embedded worker calls the demo services of the server it runs in."""
    from tests.browser_support import Server

    server = Server(tmp_path)
    try:
        definition = server.api("GET", "/api/definitions/order-fulfilment-http/").json()
        assert definition["steps"][0]["action"] == f"{server.url}/demo/services/inventory/reserve/"
        saga = server.start({"fail": {"charge_payment": 1}}, "standalone-http", definition="order-fulfilment-http")
        done = server.wait_status(saga["id"], {"completed", "compensated", "failed", "suspended"}, timeout=60)
        assert done["status"] == "completed"
        charge = next(step for step in done["steps"] if step["name"] == "charge_payment")
        assert [(a["status"], a["http_status"]) for a in charge["attempts"]] == [("failed", 503), ("succeeded", 200)]
        assert "failed on purpose" in charge["attempts"][0]["response_excerpt"]
        effects = server.api("GET", "/api/demo/effects/?correlation_id=standalone-http").json()["results"]
        assert sorted(e["operation"] for e in effects) == ["charge", "create", "reserve", "send"]
    finally:
        server.stop()


def test_only_the_demo_services_injected_failures_are_kept_out_of_the_log():
    quiet = QuietInjectedFailures()

    def record(path: str, status: int) -> logging.LogRecord:
        entry = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Service Unavailable: %s", (path,), None)
        entry.status_code, entry.request = status, RequestFactory().post(path)
        return entry

    assert not quiet.filter(record("/demo/services/payment/charge/", 503))
    assert quiet.filter(record("/demo/services/payment/charge/", 500))
    assert quiet.filter(record("/api/sagas/", 503))
