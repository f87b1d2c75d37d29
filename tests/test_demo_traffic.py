"""Demo traffic (`manage.py demo_traffic`, and the embedded mode's demo loop): the mix the issue
asks for (most sagas complete, some compensate, a few end in CRITICAL) over the demo's definitions."""

from __future__ import annotations

import random
from collections import Counter

from django.core.management import call_command

from sagas.demo import traffic
from sagas.models import Saga


def _outcome_asked(context: dict) -> str:
    if "fail_compensation" in context:
        return "critical"
    if any(times == "always" for times in context.get("fail", {}).values()):
        return "compensated"
    return "completed"


def test_the_default_mix_mostly_completes_some_compensate_and_a_few_need_a_person():
    rng = random.Random(7)
    asked = Counter(_outcome_asked(traffic.demo_context(rng)) for _ in range(5000))

    shares = {outcome: count / 5000 for outcome, count in asked.items()}
    assert 0.80 < shares["completed"] < 0.90  # 70 % plain, 10 % with a transient failure, 5 % slow
    assert 0.09 < shares["compensated"] < 0.15
    assert 0.015 < shares["critical"] < 0.05


def test_the_none_mix_asks_for_no_failure():
    rng = random.Random(7)
    assert {_outcome_asked(traffic.demo_context(rng, "none")) for _ in range(200)} == {"completed"}


# transactional_db: run() returns its connection at the end, as a long-running command must.
def test_traffic_starts_sagas_of_each_demo_definition(transactional_db, hold_calls, settings):
    call_command("loaddemo", verbosity=0, stdout=open("/dev/null", "w"))
    started = traffic.run(rate=1000, duration=1.0, seed=3)

    by_definition = Counter(Saga.objects.values_list("definition_name", flat=True))
    assert sum(by_definition.values()) == started > 30
    assert set(by_definition) == {traffic.ORCHESTRATION, traffic.CHOREOGRAPHY, traffic.HTTP}
    assert by_definition[traffic.ORCHESTRATION] > by_definition[traffic.CHOREOGRAPHY] > by_definition[traffic.HTTP]


def test_no_http_sagas_when_sagaboard_does_not_serve_the_demo_services(transactional_db, hold_calls, settings):
    settings.SAGABOARD_DEMO_SERVICES = False
    call_command("loaddemo", verbosity=0, stdout=open("/dev/null", "w"))
    traffic.run(rate=1000, duration=0.3, seed=3)

    assert not Saga.objects.filter(definition_name=traffic.HTTP).exists()
    assert Saga.objects.filter(definition_name=traffic.CHOREOGRAPHY).exists()
