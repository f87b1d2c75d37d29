"""Engine throughput: N four-step demo sagas through sagaboard versus a bare Celery chain.

    .venv/bin/python bench/engine.py [--sagas 300] [--rounds 5] [--concurrency 2]

Production topology, started by the script itself: a fresh PostgreSQL database on 127.0.0.1
(dropped at the end), Redis db 14 (flushed), one `celery worker -P prefork -c 2` serving both
sides. Each round runs the bare chains and the engine's sagas from one process, each side first
in every other round. The last line gives the median over rounds of each round's ratio (and the
median rate of each side); the line before it, the best round of each side. Both sides start their sagas the
same way inside the timed section: a saga row written in a transaction of its own, then a
message sent. The baseline chain is four tasks that each do one UPDATE of a saga row and one
INSERT of an event row in one transaction (bench/bare_tasks.py).

Last line: `ratio=R engine=E/s bare=B/s` (sagas or chains completed per second).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = 14


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    with production_topology("bench_engine", args.concurrency):
        bare_rates, engine_rates = [], []
        for round_number in range(1, args.rounds + 1):
            # Each side goes first every other round, so that neither always runs on the fresher tables.
            if round_number % 2:
                bare_rates.append(run_bare(args.sagas, round_number))
                engine_rates.append(run_engine(args.sagas, round_number))
            else:
                engine_rates.append(run_engine(args.sagas, round_number))
                bare_rates.append(run_bare(args.sagas, round_number))
            print(f"round {round_number}: bare {bare_rates[-1]:.1f} chains/s, engine {engine_rates[-1]:.1f} sagas/s, "
                  f"ratio {engine_rates[-1] / bare_rates[-1]:.2f}", flush=True)
        queries = queries_per_transition()
        print(f"statements per step: {queries}")
        best_bare, best_engine = max(bare_rates), max(engine_rates)
        print(f"best rounds: engine {best_engine:.1f}/s, bare {best_bare:.1f}/s, ratio {best_engine / best_bare:.2f}")
        # The headline pairs the two sides within each round (run back to back, each first in turn)
        # and takes the median: the machine's speed drifts between rounds, and a lucky round for
        # one side alone does not move it.
        ratio = statistics.median(e / b for e, b in zip(engine_rates, bare_rates, strict=True))
        print(f"ratio={ratio:.2f} engine={statistics.median(engine_rates):.1f}/s "
              f"bare={statistics.median(bare_rates):.1f}/s")


@contextlib.contextmanager
def production_topology(name: str, concurrency: int):
    """A fresh database (dropped afterwards) with the demo and the bare chain's tables, Redis db 14
    flushed, and one prefork worker serving both sides, warmed up."""
    database = f"{name}_{secrets.token_hex(3)}"
    psql(f'CREATE DATABASE "{database}"')
    os.environ.update(DATABASE_URL=f"postgres://root@127.0.0.1:5432/{database}",
                      REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}", DJANGO_SETTINGS_MODULE="sagaboard.settings",
                      SAGABOARD_LOG_LEVEL="WARNING")
    sys.path.insert(0, str(ROOT))
    worker = None
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from bench.bare_tasks import SCHEMA

        call_command("migrate", verbosity=0)
        call_command("loaddemo", verbosity=0, stdout=open(os.devnull, "w"))
        with connection.cursor() as cursor:
            cursor.execute(SCHEMA)
        flush_redis()
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sagaboard", "worker", "-P", "prefork", "-c", str(concurrency),
             "--loglevel=error", "-I", "bench.bare_tasks", "-n", f"bench-{secrets.token_hex(3)}@%h"],
            cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=sys.stderr)
        warm_up(count=10 * concurrency)
        yield
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run_bare(count: int, round_number: int) -> float:
    from celery import chain
    from django.db import connection

    from bench.bare_tasks import bare_step

    base = round_number * 1_000_000
    begin = time.perf_counter()
    with connection.cursor() as cursor:
        for saga_id in range(base, base + count):
            # Started as the engine starts a saga: its row written (one transaction), then its first task sent.
            cursor.execute("INSERT INTO bench_saga (id) VALUES (%s)", [saga_id])
            chain(*(bare_step.si(saga_id, seq) for seq in range(1, 5))).apply_async()
    wait(lambda: _count("SELECT count(*) FROM bench_event WHERE saga_id >= %s AND saga_id < %s AND seq = 4",
                        [base, base + count]) >= count)
    return count / (time.perf_counter() - begin)


def run_engine(count: int, round_number: int) -> float:
    from sagas import definitions, services
    from sagas.models import Saga

    definition = definitions.latest("order-fulfilment")
    prefix = f"bench-{round_number}-"
    begin = time.perf_counter()
    for n in range(count):
        services.start_saga(definition, {}, f"{prefix}{n}")
    wait(lambda: Saga.objects.filter(correlation_id__startswith=prefix, status="completed").count() >= count)
    return count / (time.perf_counter() - begin)


def warm_up(count: int) -> None:
    """Both sides once through every worker process before anything is timed: each opens its
    database connection and fills its caches on first use."""
    from celery import chain
    from django.db import connection

    from bench.bare_tasks import bare_step
    from sagas import definitions, services
    from sagas.models import Saga

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_saga (id) SELECT g FROM generate_series(1, %s) g", [count])
    for saga_id in range(1, count + 1):
        chain(*(bare_step.si(saga_id, seq) for seq in range(1, 5))).apply_async()
    definition = definitions.latest("order-fulfilment")
    for n in range(count):
        services.start_saga(definition, {}, f"warm-up-{n}")
    wait(lambda: Saga.objects.filter(correlation_id__startswith="warm-up-", status="completed").count() >= count
         and _count("SELECT count(*) FROM bench_event WHERE saga_id <= %s AND seq = 4", [count]) >= count)


def queries_per_transition() -> dict[str, int]:
    """SQL statements the engine makes for a step (BEGIN and COMMIT not counted), in this process
    with the workers held off: the first call's claim, the demo handler's call (its ledger insert),
    and recording it while claiming the next call (`advance`), each with what it publishes.
    On PostgreSQL a transaction's statements go in one or two round trips (sagas/services/sql.py)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from sagas import definitions, execution, services
    from sagas.machine import Kind

    definition = definitions.latest("order-fulfilment")
    with override_settings(SAGABOARD_ENQUEUE=False):
        saga, _ = services.start_saga(definition, {}, f"count-{secrets.token_hex(4)}")
        with CaptureQueriesContext(connection) as claimed:
            call = services.claim(saga.pk, Kind.ACTION, 0, 1)
        with CaptureQueriesContext(connection) as called:
            outcome = execution.make_call(call)
        with CaptureQueriesContext(connection) as recorded:
            services.advance(call, outcome, "bench")

    def statements(captured) -> int:
        return sum(1 for query in captured.captured_queries if query["sql"] not in ("BEGIN", "COMMIT"))

    counts = {"claim": statements(claimed), "call": statements(called), "record and claim next": statements(recorded)}
    counts["total"] = sum(counts.values())
    return counts


def wait(done, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark did not finish in time")
        time.sleep(0.05)


def _count(sql: str, params: list) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def flush_redis() -> None:
    from sagaboard.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-qAtc", sql], check=True,
                   stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
