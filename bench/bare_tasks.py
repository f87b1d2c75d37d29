"""The baseline of bench/engine.py: a bare Celery chain whose tasks each save the minimum durable
record (one UPDATE of a saga row and one INSERT of an event row, in one transaction)."""

from celery import shared_task
from django.db import connection, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_saga (id bigint PRIMARY KEY, version bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS bench_event (id bigserial PRIMARY KEY, saga_id bigint NOT NULL, seq int NOT NULL,
                                        at timestamptz NOT NULL DEFAULT now());
"""


@shared_task(ignore_result=True, acks_late=True)
def bare_step(saga_id: int, seq: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE bench_saga SET version = version + 1 WHERE id = %s", [saga_id])
        cursor.execute("INSERT INTO bench_event (saga_id, seq) VALUES (%s, %s)", [saga_id, seq])
