"""The dashboard in real Chromium against `manage.py standalone` (websockets included).

pytest-django's live_server is WSGI-only, so the server here is the embedded mode in a
subprocess: its own SQLite file, no REDIS_URL, the in-process worker and channel layer. These
tests never touch the Django ORM; everything goes through HTTP, as a user's browser does.

Screenshots of every page are written to $SAGABOARD_SCREENSHOTS (docs/screenshots/ to refresh
the README's) or else to the test's tmp_path.
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
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CRITICAL = {"fail": {"charge_payment": "always"}, "fail_compensation": {"reserve_inventory": "always"}}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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


RECORD_CLASSES = """() => {
  window.stillTheSamePage = true;
  window.classesSeen = {};
  for (const node of document.querySelectorAll('g.node.step')) {
    const seen = window.classesSeen[node.id] = [node.getAttribute('class')];
    new MutationObserver(() => seen.push(node.getAttribute('class'))).observe(node, {attributes: true});
  }
}"""


def test_an_operator_watches_the_graph_change_live_and_resolves_a_failed_saga(browser, server):
    page = logged_in(browser, server, "otto")
    # The first step sleeps, so the page is open before the saga reaches its end.
    saga = server.start({**CRITICAL, "sleep": {"reserve_inventory": 1.5}}, "browser-critical")
    page.goto(f"{server.url}/sagas/{saga['id']}/")
    page.evaluate(RECORD_CLASSES)
    expect(page.locator("#live-state")).to_have_text("live")

    expect(page.locator("#step-charge_payment")).to_have_class("node step status-failed", timeout=30_000)
    expect(page.locator("#step-reserve_inventory")).to_have_class("node step status-compensation_failed",
                                                                  timeout=30_000)
    expect(page.locator("#saga-status .badge")).to_have_text("failed")
    seen = page.evaluate("window.classesSeen")
    assert "node step status-running" in seen["step-charge_payment"]  # it went through running, live
    assert seen["step-reserve_inventory"][-1] == "node step status-compensation_failed"
    assert page.locator("#timeline li", has_text="CompensationFailed").count() >= 1

    expect(page.get_by_role("button", name="Compensate…")).to_be_hidden()  # not valid for a failed saga

    # A half-typed reason survives the updates of a retry someone else starts meanwhile.
    page.get_by_role("button", name="Resolve…").click()
    page.get_by_label("Reason").fill("released the stock by hand")
    assert server.api("POST", f"/api/sagas/{saga['id']}/actions/retry/", user="ada",
                      json={"reason": "one more go"}).status_code == 200
    expect(page.locator("#timeline li", has_text="OperatorAction")).to_have_count(1)
    server.wait_status(saga["id"], {"failed"})
    expect(page.locator("#saga-status .badge")).to_have_text("failed")
    expect(page.get_by_label("Reason")).to_have_value("released the stock by hand")

    page.get_by_label("Reason").press_sequentially(" in the warehouse UI")
    page.locator("#action-submit").click()

    expect(page.locator("#action-dialog")).not_to_be_visible()
    expect(page.locator("#saga-status .badge")).to_have_text("compensated", timeout=30_000)
    expect(page.locator("#step-reserve_inventory")).to_have_class("node step status-resolved")
    expect(page.locator("#action-outcome")).to_contain_text("resolve accepted")
    assert page.evaluate("window.stillTheSamePage") is True  # all of it without a reload
    audit = server.api("GET", f"/api/audit/?saga_id={saga['id']}").json()["results"]
    assert audit[0]["reason"] == "released the stock by hand in the warehouse UI"
    assert page.locator("#actions button[data-action]:visible").count() == 0


def test_the_dialog_works_from_the_keyboard_and_refuses_an_empty_reason(browser, server):
    page = logged_in(browser, server, "otto")
    saga = server.start(CRITICAL, "browser-empty-reason")
    server.wait_status(saga["id"], {"failed"})
    page.goto(f"{server.url}/sagas/{saga['id']}/")

    # Keyboard only: the button opens the dialog with the reason focused; Escape closes it.
    page.get_by_role("button", name="Retry…").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Reason")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#action-dialog")).not_to_be_visible()
    expect(page.get_by_role("button", name="Retry…")).to_be_focused()

    page.get_by_role("button", name="Retry…").click()
    page.get_by_label("Reason").fill("   ")
    page.locator("#action-submit").click()

    expect(page.locator("#action-error")).to_contain_text("reason")
    assert server.api("GET", f"/api/sagas/{saga['id']}/").json()["status"] == "failed"


def test_a_viewer_sees_no_action_buttons(browser, server):
    saga = server.start(CRITICAL, "browser-viewer")
    server.wait_status(saga["id"], {"failed"})
    page = logged_in(browser, server, "vera")

    page.goto(f"{server.url}/sagas/{saga['id']}/")

    expect(page.locator("#saga-status .badge")).to_have_text("failed")
    assert page.locator("button[data-action]").count() == 0
    assert page.locator("dialog").count() == 0
    page.goto(f"{server.url}/alerts/")
    assert page.get_by_role("button", name="Acknowledge").count() == 0


def test_the_saga_list_changes_a_row_status_without_a_reload(browser, server):
    page = logged_in(browser, server, "otto")
    saga = server.start({"sleep": {"reserve_inventory": 1.5}}, "browser-list")
    page.goto(f"{server.url}/sagas/")
    page.evaluate("window.stillTheSamePage = true")

    expect(page.locator(f"#saga-{saga['id']} .badge")).to_have_text("completed", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True


# --- screenshots --------------------------------------------------------------------------------

def populate(server: Server) -> dict:
    """Sagas in every state a newcomer should see."""
    server.api("POST", "/api/definitions/", user="ada", json={
        "name": "refund-request", "on_failure": "suspend",
        "description": "Refund a customer; waits for a person when a step fails.",
        "steps": [{"name": "approve", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release"},
                  {"name": "pay_back", "action": "demo.payment.charge", "compensation": "demo.payment.refund",
                   "max_attempts": 2},
                  {"name": "notify", "action": "demo.notification.send"}]})
    mixes = [({}, 12), ({"fail": {"charge_payment": 1}}, 3), ({"fail": {"create_shipment": "always"}}, 4),
             ({"fail": {"send_notification": "always"}, "fail_compensation": {"charge_payment": "always"}}, 2),
             (CRITICAL, 1), ({"sleep": {"create_shipment": 25}}, 2)]
    started = {}
    for context, count in mixes:
        for i in range(count):
            saga = server.start(context, f"shot-{len(started)}-{i}")
            started.setdefault(str(context), saga["id"])
    server.start({"fail": {"pay_back": "always"}}, "refund-7", definition="refund-request")
    time.sleep(3)
    return started


def test_screenshots_of_every_page(browser, server, tmp_path):
    out = Path(os.environ.get("SAGABOARD_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    started = populate(server)
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.goto(f"{server.url}/accounts/login/")
    page.screenshot(path=out / "login.png", full_page=True)
    page = logged_in(browser, server, "otto")
    critical = started[str(CRITICAL)]
    shots = {"overview": "/", "saga-list": "/sagas/", "saga-detail": f"/sagas/{critical}/",
             "definitions": "/definitions/", "definition-detail": "/definitions/order-fulfilment/", "alerts": "/alerts/"}
    for name, path in shots.items():
        page.goto(f"{server.url}{path}")
        expect(page.locator("h1").first).to_be_visible()
        if name in ("overview", "saga-list", "saga-detail", "alerts"):
            expect(page.locator("#live-state")).to_have_text("live")
        page.screenshot(path=out / f"{name}.png", full_page=True)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{n}.png" for n in [*shots, "login"])


def test_the_overview_counts_and_inbox_follow_new_sagas_without_a_reload(browser, server):
    page = logged_in(browser, server, "otto")
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate("window.stillTheSamePage = true")
    completed = int(page.locator('.count-tile[data-status="completed"] .n').text_content())

    server.start({}, "browser-overview-ok")
    saga = server.start(CRITICAL, "browser-overview-critical")

    expect(page.locator('.count-tile[data-status="completed"] .n')).to_have_text(str(completed + 1), timeout=30_000)
    expect(page.locator(".inbox-list a", has_text="browser-overview-critical")).to_have_attribute(
        "href", f"/sagas/{saga['id']}/", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True


def test_an_operator_acknowledges_an_alert_in_place(browser, server):
    saga = server.start(CRITICAL, "browser-ack")
    server.wait_status(saga["id"], {"failed"})
    page = logged_in(browser, server, "otto")
    page.goto(f"{server.url}/alerts/")
    row = page.locator("tr", has_text="browser-ack")

    row.get_by_role("button", name="Acknowledge").click()

    expect(row.locator(".ack-cell")).to_contain_text("by otto")
    alerts = server.api("GET", "/api/alerts/?open=true").json()["results"]
    assert [a["acknowledged_by"] for a in alerts if a["saga_id"] == saga["id"]] == ["otto"]
