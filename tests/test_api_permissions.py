"""Every role against every endpoint: anonymous nothing, viewer reads, operator acts, admin writes definitions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sagas.roles import ensure_groups
from tests.drive import saga_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hold_calls")]

DEFINITION = {"name": "perm-check", "steps": [{"name": "one", "action": "demo.notification.send"}]}


@pytest.fixture
def world(demo_definitions):
    saga = saga_in("failed")
    alert = saga.alerts.get()
    return {"saga": saga, "alert": alert}


def requests_for(world):
    saga, alert = world["saga"], world["alert"]
    return {
        "list definitions": ("get", "/api/definitions/", None, "viewer"),
        "read definition": ("get", "/api/definitions/order-fulfilment/", None, "viewer"),
        "create definition": ("post", "/api/definitions/", DEFINITION, "admin"),
        "list sagas": ("get", "/api/sagas/", None, "viewer"),
        "read saga": ("get", f"/api/sagas/{saga.pk}/", None, "viewer"),
        "saga events": ("get", f"/api/sagas/{saga.pk}/events/", None, "viewer"),
        "start saga": ("post", "/api/sagas/", {"definition": "order-fulfilment", "correlation_id": "p"}, "operator"),
        "act": ("post", f"/api/sagas/{saga.pk}/actions/resolve/", {"reason": "done by hand"}, "operator"),
        "alerts": ("get", "/api/alerts/?open=true", None, "viewer"),
        "acknowledge": ("post", f"/api/alerts/{alert.pk}/acknowledge/", None, "operator"),
        "audit": ("get", "/api/audit/", None, "viewer"),
        "effects": ("get", "/api/demo/effects/", None, "viewer"),
    }


RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}


@pytest.mark.parametrize("role", [None, "nobody", "viewer", "operator", "admin"])
def test_each_role_reaches_exactly_what_it_may(world, django_user_model, role):
    client = APIClient()
    if role == "nobody":
        client.force_authenticate(django_user_model.objects.create_user("nobody"))
    elif role:
        ensure_groups(Group, Permission)
        user = django_user_model.objects.create_user(f"user-{role}")
        user.groups.add(Group.objects.get(name=role))
        client.force_authenticate(user)
    for name, (method, path, body, needs) in requests_for(world).items():
        response = getattr(client, method)(path, body, format="json")
        allowed = RANK.get(role if role != "nobody" else None, 0) >= RANK[needs]
        if allowed:
            assert response.status_code < 400, f"{role} {name}: {response.status_code} {response.content[:300]}"
        else:
            expected = {401, 403} if role is None else {403}
            assert response.status_code in expected, f"{role} {name}: {response.status_code}"
            assert "detail" in response.json()


def test_a_service_token_authenticates(world, django_user_model):
    ensure_groups(Group, Permission)
    user = django_user_model.objects.create_user("billing-service")
    user.groups.add(Group.objects.get(name="operator"))
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post("/api/sagas/", {"definition": "order-fulfilment", "correlation_id": "svc-1"},
                           format="json")
    assert response.status_code == 201
    assert APIClient().post("/api/sagas/", {}, format="json", HTTP_AUTHORIZATION="Token nope").status_code == 401


def test_createuser_makes_a_user_in_a_role_with_a_token(db, capsys):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("createuser", "ops1", "--role", "operator", "--password", "secret")
    out = capsys.readouterr().out
    user = get_user_model().objects.get(username="ops1")
    assert user.has_perm("sagas.operate_saga") and not user.has_perm("sagas.add_definition")
    assert Token.objects.get(user=user).key in out
    assert user.check_password("secret")
