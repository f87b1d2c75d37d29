"""A choreography in real Chromium against `manage.py standalone`: the saga page draws the services and
the events between them, and shows the flow live (step colours, the business events in the timeline).

Reuses the standalone server and browser of tests/test_browser.py; no Django ORM here. Screenshots go to
$SAGABOARD_SCREENSHOTS (docs/screenshots/ to refresh the README's) or else to the test's tmp_path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser_support import logged_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NAME = "order-fulfilment-choreography"


def test_the_saga_page_shows_a_choreography_as_services_and_events_live(browser, server):
    page = logged_in(browser, server, "vera")
    context = {"fail": {"charge_payment": "always"}, "sleep": {"reserve_inventory": 1.5}}
    saga = server.start(context, "browser-choreography", definition=NAME)
    page.goto(f"{server.url}/sagas/{saga['id']}/")
    page.evaluate("window.stillTheSamePage = true")
    expect(page.locator("#live-state")).to_have_text("live")

    graph = page.locator("svg").first
    for service in ("inventory", "payment", "shipping", "notification"):
        expect(graph.locator("g.cluster text", has_text=service).first).to_be_visible()
    for event in ("OrderCreated", "InventoryReserved", "PaymentProcessed", "PaymentFailed", "ShipmentCreated"):
        expect(graph.locator("g.edge text", has_text=event).first).to_be_attached()

    expect(page.locator("#step-charge_payment")).to_have_class("node step status-failed", timeout=30_000)
    expect(page.locator("#step-reserve_inventory")).to_have_class("node step status-compensated", timeout=30_000)
    expect(page.locator("#saga-status .badge")).to_have_text("compensated", timeout=30_000)
    for event in ("InventoryReserved", "PaymentFailed"):
        expect(page.locator("#timeline li", has_text=event).first).to_be_visible()
    assert page.evaluate("window.stillTheSamePage") is True  # all of it without a reload


WATCH_EDGES = """() => {
  window.stillTheSamePage = true;
  window.edgeClasses = {};
  for (const edge of document.querySelectorAll('#saga-graph g.edge.event')) {
    const seen = window.edgeClasses[edge.id] = [edge.getAttribute('class')];
    new MutationObserver(() => seen.push(edge.getAttribute('class'))).observe(edge, {attributes: true});
  }
}"""


def test_the_flow_panel_and_the_graph_mark_each_event_observed_as_it_is_published(browser, server):
    page = logged_in(browser, server, "vera")
    saga = server.start({"sleep": {"reserve_inventory": 2}}, "browser-flow-live", definition=NAME)
    page.goto(f"{server.url}/sagas/{saga['id']}/")
    page.evaluate(WATCH_EDGES)
    expect(page.locator("#live-state")).to_have_text("live")
    edge = "event-InventoryReserved-reserve_inventory-charge_payment"
    assert page.evaluate(f"window.edgeClasses['{edge}'][0]") == "edge event expected"  # drawn before it happened
    expect(page.locator("#flow-event-InventoryReserved")).not_to_have_class("flow-event state-observed")
    expect(page.locator("#flow-event-OrderCreated .fstate")).to_have_text("✓ observed")
    table = page.locator("table.flow-events").bounding_box()

    expect(page.locator(f"#{edge}")).to_have_class("edge event observed", timeout=30_000)
    expect(page.locator("#flow-event-InventoryReserved")).to_have_class("flow-event state-observed")
    expect(page.locator("#flow-event-InventoryReserved .fstate")).to_have_text("✓ observed")
    expect(page.locator("#flow-event-InventoryReserved .at time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    # The page went on with the flow to its end: every success event observed, nothing more awaited.
    expect(page.locator("#saga-status .badge")).to_have_text("completed", timeout=30_000)
    for event in ("PaymentProcessed", "ShipmentCreated", "CustomerNotified"):
        expect(page.locator(f"#flow-event-{event}")).to_have_class("flow-event state-observed")
    expect(page.locator("#flow-summary")).to_contain_text("Nothing more expected: the flow ended completed.")
    expect(page.locator("#flow-event-PaymentFailed .fstate")).to_have_text("not published")
    changes = page.evaluate(f"window.edgeClasses['{edge}']")
    assert changes[0] == "edge event expected" and changes[-1] == "edge event observed", changes
    assert page.evaluate("window.stillTheSamePage") is True  # without a reload
    assert page.locator("table.flow-events").bounding_box() == table  # nothing moved under the reader's cursor


def test_screenshots_of_a_completed_and_a_compensated_choreography(browser, server, tmp_path):
    out = Path(os.environ.get("SAGABOARD_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page = logged_in(browser, server, "vera")
    for name, context, status in [("saga-choreography", {}, "completed"),
                                  ("saga-choreography-compensated", {"fail": {"charge_payment": "always"}}, "compensated")]:
        saga = server.start(context, f"screenshot-{name}", definition=NAME)
        server.wait_status(saga["id"], {status})
        page.goto(f"{server.url}/sagas/{saga['id']}/")
        expect(page.locator("#live-state")).to_have_text("live")
        expect(page.locator("#flow-summary")).to_contain_text(f"the flow ended {status}")
        page.screenshot(path=out / f"{name}.png", full_page=True)
        assert (out / f"{name}.png").stat().st_size > 10_000
