"""The saga list's notice in real Chromium: it announces the sagas that now belong on the page
the reader is looking at (matching its filters, newer than its last row) and no others."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser_support import CRITICAL, logged_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def watching_list(browser, server, query: str = ""):
    """The list page with these filters, once its websocket is live."""
    page = logged_in(browser, server, "otto")
    page.goto(f"{server.url}/sagas/{query}")
    expect(page.locator("#live-state")).to_have_text("live")
    return page


def run_to_end(server, correlation_id: str, status: str, context: dict | None = None, **start) -> dict:
    saga = server.start(context or {}, correlation_id, **start)
    return server.wait_status(saga["id"], {status})


def test_the_failed_list_announces_a_saga_that_fails_and_not_one_that_completes(browser, server):
    page = watching_list(browser, server, "?status=failed")
    notice = page.locator("#new-sagas")

    completing = run_to_end(server, "list-notice-completes", "completed")
    failing = run_to_end(server, "list-notice-fails", "failed", CRITICAL)

    expect(notice).to_be_visible(timeout=10_000)
    expect(notice).to_have_text("1 new or changed saga now matches these filters: show it")
    page.locator("#show-new").click()
    expect(page.locator(f"#saga-{failing['id']}")).to_be_visible()
    expect(page.locator(f"#saga-{completing['id']}")).to_have_count(0)


def test_a_list_of_another_definition_does_not_announce_this_one(browser, server):
    server.api("POST", "/api/definitions/", user="ada", json={
        "name": "other-flow", "steps": [{"name": "only", "action": "demo.notification.send"}]})
    page = watching_list(browser, server, "?definition=other-flow")

    run_to_end(server, "list-notice-elsewhere", "completed")
    run_to_end(server, "list-notice-here", "completed", definition="other-flow")

    one_match = "1 new or changed saga now matches these filters: show it"
    expect(page.locator("#new-sagas")).to_have_text(one_match, timeout=10_000)


def test_the_unfiltered_list_announces_new_sagas(browser, server):
    page = watching_list(browser, server)

    server.start({}, "list-notice-new")

    expect(page.locator("#show-new")).to_have_text("1 new saga started: show it", timeout=10_000)
