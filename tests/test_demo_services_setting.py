"""SAGABOARD_DEMO_SERVICES: the demo's HTTP services (no login) are served only when it is on."""

from __future__ import annotations

import importlib

import pytest
from django.test import Client
from django.urls import clear_url_caches

pytestmark = pytest.mark.django_db


@pytest.fixture
def reload_urls(settings):
    def reload(enabled: bool) -> None:
        settings.SAGABOARD_DEMO_SERVICES = enabled
        import sagaboard.urls

        importlib.reload(sagaboard.urls)
        clear_url_caches()

    yield reload
    reload(True)


def test_the_demo_services_answer_when_on_and_are_not_found_when_off(reload_urls):
    url = "/demo/services/inventory/reserve/"
    reload_urls(True)
    assert Client().get(url).status_code == 405  # there, and POST only
    reload_urls(False)
    assert Client().get(url).status_code == 404
    assert Client().post(url, {}, content_type="application/json").status_code == 404
