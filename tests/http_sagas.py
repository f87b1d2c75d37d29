"""Whole HTTP sagas for the tests: save a definition, start a saga, wait for it to rest, read its attempts."""

from __future__ import annotations

from sagas import definitions, services
from sagas.api.serializers import DefinitionSerializer
from sagas.models import Saga
from tests.conftest import wait_for

RESTING = {"completed", "compensated", "failed", "suspended"}


def start(data: dict, context: dict, correlation_id: str) -> Saga:
    serializer = DefinitionSerializer(data=data)
    assert serializer.is_valid(), serializer.errors
    definition, _ = definitions.save_version(serializer.validated_data)
    saga, created = services.start_saga(definition, context, correlation_id)
    assert created
    return saga


def wait_resting(saga: Saga, worker, timeout: float = 60) -> Saga:
    def resting():
        saga.refresh_from_db()
        return saga if saga.status in RESTING else None

    try:
        return wait_for(resting, timeout, what=f"saga {saga.correlation_id} at rest")
    except AssertionError:
        print(worker.tail())
        raise


def attempts(saga: Saga, step: str) -> list[tuple]:
    return list(saga.attempts.filter(step__name=step, kind="action").order_by("number").values_list(
        "number", "status", "http_status", "response_excerpt"))
