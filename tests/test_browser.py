"""The dashboard in real Chromium against `manage.py standalone` (websockets included; the server
and the browser come from tests/browser_support.py).

Screenshots of every page are written to $SAGABOARD_SCREENSHOTS (docs/screenshots/ to refresh
the README's) or else to the test's tmp_path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser_support import CRITICAL, Server, logged_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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
