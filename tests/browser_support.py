"""The dashboard's browser tests share this: `manage.py standalone` as a subprocess (`server`), one
headless Chromium (`browser`), and a logged-in page. tests/conftest.py registers the fixtures.

pytest-django's live_server is WSGI-only, so the server here is the embedded mode in a
subprocess: its own SQLite file, no REDIS_URL, the in-process worker and channel layer. The
browser tests never touch the Django ORM; everything goes through HTTP, as a user's browser does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CRITICAL = {"fail": {"charge_payment": "always"}, "fail_compensation": {"reserve_inventory": "always"}}



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`manage.py standalone --no-demo` on a fresh SQLite database, with an operator, a viewer and an admin."""

    def __init__(self, tmp: Path):
        self.env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        self.env.update(DATABASE_URL=f"sqlite:///{tmp / 'sagaboard.sqlite3'}", PYTHONUNBUFFERED="1")
        self.manage("migrate", "-v0")
        self.tokens = {name: self.manage("createuser", name, "--role", role, "--password", "pw").split()[-1]
                       for name, role in [("otto", "operator"), ("vera", "viewer"), ("ada", "admin")]}
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(tmp / "server.log", "ab")
        self.popen = subprocess.Popen(
            [sys.executable, "manage.py", "standalone", "--no-demo", "--host", "127.0.0.1", "--port",
             self.url.rsplit(":", 1)[1]], cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.log_path = tmp / "server.log"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/accounts/login/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"standalone did not come up:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def api(self, method: str, path: str, user: str = "otto", **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Token {self.tokens[user]}"},
                             timeout=30, **kwargs)

    def start(self, context: dict, correlation_id: str, definition: str = "order-fulfilment") -> dict:
        response = self.api("POST", "/api/sagas/", json={"definition": definition, "context": context,
                                                        "correlation_id": correlation_id})
        assert response.status_code == 201, response.text
        return response.json()

    def wait_status(self, saga_id: str, statuses: set[str], timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            saga = self.api("GET", f"/api/sagas/{saga_id}/").json()
            if saga["status"] in statuses:
                return saga
            if time.monotonic() > deadline:
                raise AssertionError(f"saga {saga_id} is {saga['status']}, not {statuses}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)  # what Ctrl-C does; daphne stops at once
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("standalone"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def logged_in(browser, server: Server, username: str):
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.goto(f"{server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/")
    return page
