"""Definitions: new versions while sagas run, the diff, and the export/import commands."""

from __future__ import annotations

import copy
import io
import json

import pytest
from django.core.management import CommandError, call_command

from sagas import definitions, services
from sagas.models import Definition, Saga
from tests.conftest import wait_for

ORDER = {
    "name": "order",
    "steps": [
        {"name": "reserve_inventory", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release",
         "backoff_seconds": 0},
        {"name": "charge_payment", "action": "demo.payment.charge", "compensation": "demo.payment.refund",
         "backoff_seconds": 0},
    ],
}


def with_extra_step(body: dict) -> dict:
    body = copy.deepcopy(body)
    body["steps"].append({"name": "send_notification", "action": "demo.notification.send", "backoff_seconds": 0})
    return body


@pytest.mark.django_db
def test_saving_the_same_definition_twice_keeps_one_version():
    first, created = definitions.save_version(ORDER)
    again, created_again = definitions.save_version(copy.deepcopy(ORDER))
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk


@pytest.mark.django_db
def test_the_diff_of_a_version_with_itself_is_identical():
    definition, _ = definitions.save_version(ORDER)
    assert definitions.diff(definition, definition)["identical"] is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_sagas_running_on_the_old_version_finish_on_it_while_new_ones_use_the_new(celery_worker_process):
    old, _ = definitions.save_version(ORDER)
    slow, _ = services.start_saga(old, {"sleep": {"charge_payment": 1.5}}, "started-on-v1")
    wait_for(lambda: Saga.objects.get(pk=slow.pk).current_step == "charge_payment", 30, what="the old saga running")
    new, created = definitions.save_version(with_extra_step(ORDER))
    assert created and new.version == 2
    fresh, _ = services.start_saga(definitions.latest("order"), {}, "started-on-v2")

    def finished(saga_id):
        saga = Saga.objects.get(pk=saga_id)
        return saga if saga.status == "completed" else None

    slow = wait_for(lambda: finished(slow.pk), 60, what="the old saga completed")
    fresh = wait_for(lambda: finished(fresh.pk), 60, what="the new saga completed")
    assert (slow.definition_version, fresh.definition_version) == (1, 2)
    assert list(slow.steps.values_list("name", flat=True)) == ["reserve_inventory", "charge_payment"]
    assert list(fresh.steps.values_list("name", "status")) == [
        ("reserve_inventory", "succeeded"), ("charge_payment", "succeeded"), ("send_notification", "succeeded")]
    assert "notified" not in slow.context and fresh.context["notified"] is True


# --- the commands ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_exportdefinitions_then_importdefinitions_round_trips(tmp_path):
    definitions.save_version(ORDER)
    definitions.save_version(with_extra_step(ORDER))
    definitions.save_version({**ORDER, "name": "refund", "on_failure": "suspend", "description": "money back"})
    out = io.StringIO()
    call_command("exportdefinitions", "--output", str(tmp_path / "defs.json"), stdout=out)
    assert out.getvalue().strip() == f"exported 2 definitions: order v2, refund v1 to {tmp_path / 'defs.json'}"
    exported = json.loads((tmp_path / "defs.json").read_text())
    assert [(d["name"], d["version"], len(d["steps"])) for d in exported] == [("order", 2, 3), ("refund", 1, 2)]

    Definition.objects.all().delete()
    out = io.StringIO()
    call_command("importdefinitions", str(tmp_path / "defs.json"), stdout=out)
    assert out.getvalue().strip() == "imported 2 definitions, 2 new versions: order v1 (new), refund v1 (new)"
    again = definitions.export()
    assert again == [{**d, "version": 1} for d in exported]

    out = io.StringIO()
    call_command("importdefinitions", str(tmp_path / "defs.json"), stdout=out)
    assert "0 new versions" in out.getvalue()
    assert Definition.objects.count() == 2


@pytest.mark.django_db
def test_exportdefinitions_writes_json_to_standard_output():
    definitions.save_version(ORDER)
    out = io.StringIO()
    call_command("exportdefinitions", "--name", "order", stdout=out)
    assert [d["name"] for d in json.loads(out.getvalue())] == ["order"]


@pytest.mark.django_db
def test_importdefinitions_with_an_invalid_definition_imports_nothing_and_says_why(tmp_path):
    definitions.save_version(ORDER)
    broken = {**ORDER, "name": "broken", "steps": [{"name": "", "action": "demo.nothing"}]}
    path = tmp_path / "defs.json"
    path.write_text(json.dumps([with_extra_step(ORDER), broken]))
    with pytest.raises(CommandError) as failure:
        call_command("importdefinitions", str(path), stdout=io.StringIO())
    message = str(failure.value)
    assert "nothing was imported: invalid definition #2 (broken)" in message
    assert "a step needs a name" in message and "no Python step handler is registered as 'demo.nothing'" in message
    assert list(Definition.objects.values_list("name", "version")) == [("order", 1)]


@pytest.mark.django_db
def test_importdefinitions_refuses_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "defs.json"
    path.write_text("{nope")
    with pytest.raises(CommandError, match="is not JSON"):
        call_command("importdefinitions", str(path))
