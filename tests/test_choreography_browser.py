"""A choreography in real Chromium against `manage.py standalone`: the saga page draws the services and
the events between them, and shows the flow live (step colours, the business events in the timeline).

Reuses the standalone server and browser of tests/test_browser.py; no Django ORM here.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.test_browser import browser, logged_in, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NAME = "order-fulfilment-choreography"


def test_the_saga_page_shows_a_choreography_as_services_and_events_live(browser, server):  # noqa: F811
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
