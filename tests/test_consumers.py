"""The websocket streams (`/ws/sagas/`, `/ws/sagas/<id>/`) over a real socket, as a browser meets them.

Production topology: daphne in a subprocess on the test database and Redis, sagas run by the
session's Celery worker, a `websockets` client with an Origin header and a session cookie.
Embedded topology: `manage.py standalone` on SQLite with the in-memory layer.

Redis pub/sub channels are shared by every Redis db number, so other suites running beside this
one may publish to the same `sagas` group: the overview tests only look at their own sagas.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import transaction
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sagas import services
from sagas.models import Saga
from tests.conftest import ROOT, make_user, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True)]

STEPS = ["reserve_inventory", "charge_payment", "create_shipment", "send_notification"]
CRITICAL = {"fail": {"charge_payment": "always"}, "fail_compensation": {"reserve_inventory": "always"}}
RESTING = ["completed", "compensated", "failed", "suspended"]
BIN = Path(sys.executable).parent


# --- servers -----------------------------------------------------------------------------------

@dataclass
class Server:
    port: int
    popen: subprocess.Popen
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], env: dict, log_path: Path, port: int) -> Server:
    log = open(log_path, "ab")
    popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(port, popen, log_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if popen.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"server did not start:\n{server.tail()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """daphne on the test database and Redis: the web half of the production topology."""
    if settings.EMBEDDED:
        pytest.fail("the websocket tests need REDIS_URL (make test sets it)")
    port = free_port()
    server = start_server([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "sagaboard.asgi:application"],
                          worker_env(), tmp_path_factory.mktemp("daphne") / "daphne.log", port)
    yield server
    server.stop()


# --- clients -----------------------------------------------------------------------------------

def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def open_socket(server: Server, path: str, cookie: str | None = None, origin: str | None = None) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    return connect(server.ws + path, origin=origin or server.http, additional_headers=headers, open_timeout=10)


def collect(ws: ClientConnection, done: Callable[[list[dict]], bool], timeout: float = 60) -> list[dict]:
    """Messages received until `done(messages)` holds."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            messages.append(json.loads(ws.recv(timeout=remaining)))
        except TimeoutError:
            raise AssertionError(f"stream did not reach its end in {timeout} s; got {messages[-10:]}") from None
    return messages


def close_code(ws: ClientConnection) -> int | None:
    try:
        ws.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the socket stayed open and sent a message")


def of_type(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["type"] == kind]


def saw_event(kind: str) -> Callable[[list[dict]], bool]:
    return lambda messages: any(m["type"] == "event" and m["event"]["type"] == kind for m in messages)


def summaries(messages: list[dict], saga_ids: set[str]) -> list[dict]:
    """The overview's saga summaries for these sagas, single (`saga`) and coalesced (`sagas`) alike."""
    found = []
    for message in messages:
        batch = [message["saga"]] if message["type"] == "saga" else message.get("sagas", [])
        found += [s for s in batch if s["id"] in saga_ids]
    return found


def latest_status(messages: list[dict], saga_id: str) -> str | None:
    mine = summaries(messages, {saga_id})
    return max(mine, key=lambda s: s["version"])["status"] if mine else None


# --- who may connect ---------------------------------------------------------------------------

def test_an_anonymous_socket_is_closed_with_4401(daphne_server):
    with open_socket(daphne_server, "/ws/sagas/") as ws:
        assert close_code(ws) == 4401


def test_a_socket_from_another_origin_is_refused(daphne_server, viewer_user):
    with pytest.raises(InvalidStatus) as refused:
        open_socket(daphne_server, "/ws/sagas/", session_cookie(viewer_user), origin="http://evil.example.com")
    assert refused.value.response.status_code == 403


def test_a_user_without_the_viewer_role_is_closed_with_4401(daphne_server, django_user_model):
    nobody = make_user(django_user_model, "nemo", role=None)
    with open_socket(daphne_server, "/ws/sagas/", session_cookie(nobody)) as ws:
        assert close_code(ws) == 4401


def test_a_viewer_stays_connected(daphne_server, viewer_user):
    with open_socket(daphne_server, f"/ws/sagas/{uuid.uuid4()}/", session_cookie(viewer_user)) as ws:
        assert ws.ping().wait(5), "the socket answers pings"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # nothing to say yet, and not closed


# --- one saga's stream -------------------------------------------------------------------------

def test_a_saga_stream_carries_every_change_step_and_event_in_order(
        daphne_server, celery_worker_process, demo_definitions, viewer_user):
    cookie = session_cookie(viewer_user)
    with transaction.atomic():  # connect before the saga's first message can go out
        saga, _ = services.start_saga(demo_definitions, {"fail": {"charge_payment": 1}}, "ws-one-saga")
        ws = open_socket(daphne_server, f"/ws/sagas/{saga.pk}/", cookie)
    with ws:
        messages = collect(ws, saw_event("SagaCompleted"))

    assert {m["type"] for m in messages} == {"saga", "step", "event"}
    assert all(m.get("saga_id", m.get("saga", {}).get("id")) == str(saga.pk) for m in messages)
    versions = [m["saga"]["version"] if m["type"] == "saga" else m["version"] for m in messages]
    assert versions == sorted(versions), "messages arrive in the order of the saga's versions"
    saga_versions = [m["saga"]["version"] for m in of_type(messages, "saga")]
    assert saga_versions == list(range(1, saga_versions[-1] + 1)), "one summary per change, none lost"

    api = requests.Session()
    api.headers["Cookie"] = cookie
    detail = api.get(f"{daphne_server.http}/api/sagas/{saga.pk}/", timeout=10).json()
    log = api.get(f"{daphne_server.http}/api/sagas/{saga.pk}/events/?page_size=500", timeout=10).json()["results"]

    streamed_events = [m["event"] for m in of_type(messages, "event")]
    assert [e["seq"] for e in streamed_events] == list(range(1, len(log) + 1))
    assert streamed_events == log, "the events streamed are the event log, field for field"

    last_step = {m["step"]["name"]: m["step"] for m in of_type(messages, "step")}
    assert last_step == {step["name"]: step for step in detail["steps"]}, "each step's last message is its API JSON"
    payment = last_step["charge_payment"]
    assert (payment["index"], payment["status"]) == (1, "succeeded")
    assert [(a["number"], a["status"]) for a in payment["attempts"]] == [(1, "failed"), (2, "succeeded")]

    final = of_type(messages, "saga")[-1]["saga"]
    assert final == {key: detail[key] for key in ("id", "definition", "correlation_id", "status", "current_step",
                                                   "version", "created_at", "updated_at")}
    assert final["status"] == "completed"


# --- the overview stream -----------------------------------------------------------------------

def test_the_overview_stream_carries_summaries_and_a_critical_alert(
        daphne_server, celery_worker_process, demo_definitions, viewer_user):
    with open_socket(daphne_server, "/ws/sagas/", session_cookie(viewer_user)) as ws:
        happy, _ = services.start_saga(demo_definitions, {}, "ws-overview-happy")
        stuck, _ = services.start_saga(demo_definitions, CRITICAL, "ws-overview-stuck")
        happy_id, stuck_id = str(happy.pk), str(stuck.pk)

        def alerted(messages: list[dict]) -> list[dict]:
            return [m["alert"] for m in of_type(messages, "alert") if m["alert"]["saga_id"] == stuck_id]

        messages = collect(ws, lambda ms: latest_status(ms, happy_id) == "completed"
                           and latest_status(ms, stuck_id) == "failed" and bool(alerted(ms)))

    for saga_id in (happy_id, stuck_id):
        # Each process coalesces on its own, so an older summary may come after a newer one from
        # another process: clients keep the highest version.
        newest = max(summaries(messages, {saga_id}), key=lambda s: s["version"])
        detail = Saga.objects.get(pk=saga_id)
        assert newest["version"] == detail.version
        assert set(newest) == {"id", "definition", "correlation_id", "status", "current_step", "version",
                               "created_at", "updated_at"}
    [alert] = alerted(messages)
    assert (alert["severity"], alert["open"]) == ("CRITICAL", True)
    assert "failed" in alert["message"]


def test_a_burst_of_new_sagas_reaches_the_overview_in_a_few_coalesced_messages(
        daphne_server, celery_worker_process, demo_definitions, viewer_user):
    from sagas.events import OVERVIEW_WINDOW

    with open_socket(daphne_server, "/ws/sagas/", session_cookie(viewer_user)) as ws:
        started = time.monotonic()
        ids = {str(services.start_saga(demo_definitions, {}, f"ws-burst-{n}")[0].pk) for n in range(300)}
        took = time.monotonic() - started

        def created(messages: list[dict]) -> list[dict]:
            return [s for s in summaries(messages, ids) if s["version"] == 1]

        messages = collect(ws, lambda ms: {s["id"] for s in created(ms)} == ids, timeout=30)

    # The messages this test process sent (a worker may be moving the same sagas on meanwhile).
    ours = [m for m in messages if created([m])]
    assert len(created(ours)) == 300, "each new saga once"
    assert len(ours) <= took / OVERVIEW_WINDOW + 3, f"{len(ours)} messages for 300 sagas in {took:.2f} s"
    batches = [m["sagas"] for m in ours if m["type"] == "sagas"]
    assert batches and max(len(b) for b in batches) > 1
    assert all(len({s["id"] for s in b}) == len(b) for b in batches), "a batch holds each saga once"
    # Let the worker finish them before the database is emptied under it.
    wait_for(lambda: not Saga.objects.filter(pk__in=ids).exclude(status__in=RESTING).exists(), 180,
             what="the burst's sagas at rest")


# --- embedded mode -----------------------------------------------------------------------------

@pytest.fixture
def standalone_server(tmp_path):
    """`manage.py standalone --no-demo` on a fresh SQLite file, no Redis: the embedded topology."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'standalone.sqlite3'}", PYTHONUNBUFFERED="1")
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "-v0"], ["createuser", "olga", "--role", "operator", "--password", "pw"]):
        subprocess.run(manage + command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    server = start_server(manage + ["standalone", "--no-demo", "--port", str(port)], env,
                          tmp_path / "standalone.log", port)
    yield server
    server.stop()


def log_in(server: Server, username: str, password: str) -> requests.Session:
    browser = requests.Session()
    browser.get(f"{server.http}/accounts/login/", timeout=10)
    answer = browser.post(f"{server.http}/accounts/login/", timeout=10, data={
        "username": username, "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
    assert answer.ok and "sessionid" in browser.cookies, answer.text[:500]
    browser.headers.update({"X-CSRFToken": browser.cookies["csrftoken"], "Referer": server.http})
    return browser


def test_the_embedded_mode_streams_the_same_messages(standalone_server):
    server = standalone_server
    browser = log_in(server, "olga", "pw")
    cookie = f"sessionid={browser.cookies['sessionid']}"
    with open_socket(server, "/ws/sagas/", cookie) as overview:
        # The first step sleeps, so that the saga's own socket is open before most of its changes.
        answer = browser.post(f"{server.http}/api/sagas/", timeout=10, json={
            "definition": "order-fulfilment", "correlation_id": "embedded-1",
            "context": {"sleep": {"reserve_inventory": 1.5}}})
        assert answer.status_code == 201, answer.text
        saga_id = answer.json()["id"]
        with open_socket(server, f"/ws/sagas/{saga_id}/", cookie) as one:
            messages = collect(one, saw_event("SagaCompleted"))
        stuck = browser.post(f"{server.http}/api/sagas/", timeout=10, json={
            "definition": "order-fulfilment", "correlation_id": "embedded-stuck", "context": CRITICAL}).json()
        seen = collect(overview, lambda ms: latest_status(ms, saga_id) == "completed" and any(
            m["type"] == "alert" and m["alert"]["saga_id"] == stuck["id"] for m in ms))

    log = browser.get(f"{server.http}/api/sagas/{saga_id}/events/?page_size=500", timeout=10).json()["results"]
    streamed = [m["event"] for m in of_type(messages, "event")]
    assert streamed == log[len(log) - len(streamed):], "the events streamed are the tail of the event log"
    assert streamed[-1]["type"] == "SagaCompleted" and len(streamed) >= 6
    detail = browser.get(f"{server.http}/api/sagas/{saga_id}/", timeout=10).json()
    last_step = {m["step"]["name"]: m["step"] for m in of_type(messages, "step")}
    assert last_step == {s["name"]: s for s in detail["steps"] if s["name"] in last_step}
    assert set(last_step) >= {"charge_payment", "create_shipment", "send_notification"}
    saga_versions = [m["saga"]["version"] for m in of_type(messages, "saga")]
    assert saga_versions == list(range(saga_versions[0], detail["version"] + 1))
    alert = next(m["alert"] for m in seen if m["type"] == "alert" and m["alert"]["saga_id"] == stuck["id"])
    assert alert["severity"] == "CRITICAL"
