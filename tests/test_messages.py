"""The live messages carry the REST API's JSON: built from the rows a transition just wrote, they
must read exactly as the serializers read the same rows from the database afterwards."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sagas import events, messages, services
from sagas.api.serializers import EventSerializer, SagaSerializer, StepSerializer
from sagas.models import Saga, SagaEvent, SagaStep, StepAttempt
from tests.drive import make_definition


class _Recorder:
    """Stands in for the process's publisher: records what publishing hands over, by group."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, list[dict]]] = []

    def enqueue(self, group: str, batch: list[dict]) -> None:
        self.handed.append((group, batch))

    def coalesce(self, summary: dict) -> None:
        self.handed.append((events.ALL_SAGAS, [{"type": "saga", "saga": summary}]))


@pytest.fixture
def sent(monkeypatch):
    """The messages handed to the publisher, by group."""
    recorder = _Recorder()
    monkeypatch.setattr(events, "_submit", lambda handoff: handoff(recorder))
    return recorder.handed


def _as_json(value):
    return json.loads(json.dumps(value, default=str))


def _rest_step(step_id) -> dict:
    step = SagaStep.objects.prefetch_related("attempts").get(pk=step_id)
    return _as_json(StepSerializer(step).data)


def _check_messages_match_the_database(handed) -> None:
    checked = Counter()
    for _, batch in handed:
        for message in batch:
            if message["type"] == "step":
                step = SagaStep.objects.get(saga_id=message["saga_id"], name=message["step"]["name"])
                expected = _rest_step(step.pk)
                expected["attempts"].sort(key=lambda a: (a["started_at"], a["number"]))
                assert _as_json(message["step"]) == expected
            elif message["type"] == "event":
                row = SagaEvent.objects.get(saga_id=message["saga_id"], seq=message["event"]["seq"])
                assert _as_json(message["event"]) == _as_json(EventSerializer(row).data)
            elif message["type"] == "saga":
                summary = message["saga"]
                expected = _as_json(SagaSerializer(Saga.objects.get(pk=summary["id"])).data)
                assert summary == {key: expected[key] for key in summary}
            checked[message["type"]] += 1
    # Each transition hands over its saga's summary (twice: its own group and the overview), the
    # steps it touched and the events it appended.
    assert checked["saga"] == 2 and checked["step"] >= 1 and checked["event"] >= 1, checked


OUTCOMES = {
    "happy path": [services.Outcome(succeeded=True, output={"reservation_id": "r-1"})] * 3,
    "retried then compensated": [
        services.Outcome(succeeded=True, output={"n": 1}),
        services.Outcome(succeeded=False, error="payment down", traceback="Traceback ...", http_status=503,
                         response_excerpt="busy"),
        services.Outcome(succeeded=False, error="payment down again", permanent=True),
        services.Outcome(succeeded=True),
    ],
    "a failing compensation": [
        services.Outcome(succeeded=True),
        services.Outcome(succeeded=False, error="no", permanent=True),
        services.Outcome(succeeded=False, error="release failed", permanent=True),
    ],
}


@pytest.mark.parametrize("path", sorted(OUTCOMES))
@pytest.mark.parametrize("continued", [False, True], ids=["record_outcome", "advance"])
def test_step_and_event_messages_equal_the_api_json_of_the_rows_written(
        path, continued, db, hold_calls, sent, django_capture_on_commit_callbacks):
    definition = make_definition(max_attempts=2)
    saga, _ = services.start_saga(definition, {}, f"messages-{path}-{continued}")
    outcomes = list(OUTCOMES[path])
    call = None
    while outcomes:
        if call is None:
            work, number = services.next_work(saga.pk)
            with django_capture_on_commit_callbacks(execute=True):
                call = services.claim(saga.pk, work.kind, work.index, number, worker="w1")
            _check_messages_match_the_database(sent)
            sent.clear()
        with django_capture_on_commit_callbacks(execute=True):
            if continued:
                call = services.advance(call, outcomes.pop(0), "w1")
            else:
                services.record_outcome(call, outcomes.pop(0))
                call = None
        _check_messages_match_the_database(sent)
        sent.clear()
    assert StepAttempt.objects.filter(saga=saga).count() >= 3


def test_pending_steps_read_as_in_the_api(db, hold_calls):
    definition = make_definition()
    saga, _ = services.start_saga(definition, {}, "messages-pending")
    for step in SagaStep.objects.filter(saga=saga):
        assert _as_json(messages.step_json(step, [])) == _rest_step(step.pk)
