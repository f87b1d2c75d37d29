"""Shared fixtures: the personas (admin, operator, viewer, anonymous) and a real Celery worker.

The suite runs against real PostgreSQL and Redis (`make test` sets DATABASE_URL and REDIS_URL).
Tests that go through the worker use `transaction=True` so that the worker process sees their rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.browser_support import browser, server  # noqa: F401 (the browser tests' fixtures)

ROOT = Path(__file__).resolve().parent.parent


def make_user(django_user_model, username: str, role: str | None, superuser: bool = False):
    from django.contrib.auth.models import Group, Permission

    from sagas.roles import ensure_groups

    ensure_groups(Group, Permission)
    if superuser:
        user = django_user_model.objects.create_superuser(username, f"{username}@example.com", "pw")
    else:
        user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw")
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def admin_user(django_user_model):
    return make_user(django_user_model, "ada", "admin")


@pytest.fixture
def operator_user(django_user_model):
    return make_user(django_user_model, "otto", "operator")


@pytest.fixture
def viewer_user(django_user_model):
    return make_user(django_user_model, "vera", "viewer")


def _client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    return _client_for(admin_user)


@pytest.fixture
def operator_api(operator_user) -> APIClient:
    return _client_for(operator_user)


@pytest.fixture
def viewer_api(viewer_user) -> APIClient:
    return _client_for(viewer_user)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def demo_definitions(db):
    from django.core.management import call_command

    call_command("loaddemo", stdout=open(os.devnull, "w"))
    from sagas.definitions import latest

    return latest("order-fulfilment")


@pytest.fixture
def hold_calls(settings):
    """Keep calls in the database: the test drives the saga itself (see tests/drive.py)."""
    settings.SAGABOARD_ENQUEUE = False


# --- a real Celery worker ----------------------------------------------------------------------

def worker_env() -> dict:
    """The worker's environment: the test database (pytest-django's test_ name) and the test Redis."""
    database = settings.DATABASES["default"]
    url = f"postgres://{database['USER'] or 'root'}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/" \
          f"{database['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1",
            "SAGABOARD_LEASE_GRACE_SECONDS": "2", "SAGABOARD_STALL_SECONDS": "3",
            # HTTP handler tests serve on 127.0.0.1 (any port); other names stay refused.
            "SAGABOARD_HTTP_ALLOWLIST": "127.0.0.1"}


class CeleryProcess:
    """A `celery -A sagaboard ...` process in a group of its own (so kill -9 takes its children)."""

    def __init__(self, log_path: Path, *arguments: str):
        self.log_path = log_path
        self.arguments = arguments
        self.start()

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "celery", "-A", "sagaboard", *self.arguments],
                                      cwd=ROOT, env=worker_env(), stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill9(self) -> None:
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        if not self.log.closed:
            self.log.close()

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])


def purge_queue() -> None:
    from sagaboard.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """One worker for the session, on the test database; requires REDIS_URL."""
    if settings.EMBEDDED:
        pytest.fail("the worker tests need REDIS_URL (make test sets it)")
    purge_queue()
    worker = worker_process(tmp_path_factory.mktemp("worker") / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def _worker_quiet_after_test(request):
    """After a test that used the worker, wait until no saga is moving before the tables are flushed
    (TRUNCATE under a worker's open transaction deadlocks)."""
    yield
    if "celery_worker_process" not in request.fixturenames:
        return
    from sagas.machine import ACTIVE
    from sagas.models import Saga, StepAttempt

    def quiet() -> bool:
        return not Saga.objects.filter(status__in=list(ACTIVE)).exists() and \
            not StepAttempt.objects.filter(status="running").exists()

    try:
        wait_for(quiet, timeout=60, interval=0.2, what="no saga moving")
    finally:
        time.sleep(0.2)  # the worker's last commit hooks (publishing) run after its transaction


def worker_process(log_path: Path, concurrency: int = 2) -> CeleryProcess:
    return CeleryProcess(log_path, "worker", "-c", str(concurrency), "-P", "prefork", "--loglevel=warning",
                         "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h")


def beat_process(log_path: Path) -> CeleryProcess:
    return CeleryProcess(log_path, "beat", "--loglevel=warning", "-s", str(log_path.with_suffix(".schedule")))


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)
