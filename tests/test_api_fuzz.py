"""Schemathesis against the OpenAPI schema: no request, however odd, gets a server error.

Every operation of /api/schema/ is called with generated valid and invalid input as an admin
(the role that reaches every endpoint); the only check is that nothing answers 5xx.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hold_calls")]

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """A raw WSGI call closes the database connection when the request ends, as it should in
    production; inside a test's transaction it must stay open (Django's test client does the same)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(admin_user, demo_definitions) -> str:
    from rest_framework.authtoken.models import Token

    from tests.drive import saga_in

    saga_in("failed")  # something to read, act on and acknowledge
    return Token.objects.create(user=admin_user).key


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case, admin_token):
    case.call_and_validate(headers={"Authorization": f"Token {admin_token}"}, checks=[not_a_server_error])
