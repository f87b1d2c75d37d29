"""The engine's plain-SQL layer (sagas/services/sql.py) against PostgreSQL: what it writes, what a
missed conditional update does, and that its statements are prepared on the server (each step
would otherwise be parsed and planned anew: about a third of PostgreSQL's time on the hot path)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.utils import timezone

from sagas import services
from sagas.models import Saga, SagaEvent
from sagas.services.sql import Batch, RowsMissed, read_saga
from tests.drive import make_definition


@pytest.fixture
def saga(db, hold_calls):
    started, _ = services.start_saga(make_definition(), {}, "sql-layer")
    return started


def _bump(saga: Saga, from_version: int) -> Batch:
    batch = Batch()
    batch.update(Saga, {"pk": saga.pk, "version": from_version}, {"version": from_version + 1}, conditional=True)
    return batch


def test_the_engine_statements_are_prepared_on_the_server(saga):
    with transaction.atomic():
        for version in range(saga.version, saga.version + 3):
            _bump(saga, version).run()
        with connection.cursor() as cursor:
            # Every execution of a prepared statement counts one plan, custom or generic (cached).
            cursor.execute("SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements "
                           "WHERE statement LIKE 'UPDATE %%sagas_saga%%'")
            executed_prepared = cursor.fetchone()[0]
    assert executed_prepared >= 3
    assert Saga.objects.get(pk=saga.pk).version == saga.version + 3


def test_a_conditional_update_that_misses_raises_and_the_transaction_writes_nothing(saga):
    event = SagaEvent(saga_id=saga.pk, seq=saga.event_seq + 1, type="Probe", at=timezone.now(), data={})
    with pytest.raises(RowsMissed), transaction.atomic():
        batch = _bump(saga, saga.version + 7)  # not the saga's version: someone moved it first
        batch.insert([event])
        batch.run()
    assert Saga.objects.get(pk=saga.pk).version == saga.version
    assert not SagaEvent.objects.filter(saga_id=saga.pk, type="Probe").exists()


def test_inserted_rows_get_their_keys_and_a_read_in_the_same_round_trip_sees_the_writes(saga):
    events = [SagaEvent(saga_id=saga.pk, seq=saga.event_seq + n, type="Probe", at=timezone.now(), data={"n": n})
              for n in (1, 2)]
    with transaction.atomic():
        batch = _bump(saga, saga.version)
        batch.insert(events, returning_pk=True)
        found, mode, steps = read_saga(saga.pk, before=batch)
    assert all(event.pk for event in events)
    written = SagaEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("seq").values_list("data", flat=True)
    assert list(written) == [{"n": 1}, {"n": 2}]
    assert (found.version, mode, [step.index for step in steps]) == (saga.version + 1, "orchestration", [0, 1, 2])
