"""API latency at scale: fill PostgreSQL with N sagas (and their steps), then time the list,
filter, search and detail endpoints.

    .venv/bin/python bench/api.py [--sagas 1000000] [--requests 200] [--keep]

It creates its own database on 127.0.0.1 (dropped at the end unless --keep), fills it with
INSERT ... SELECT generate_series (90 % completed, 6 % compensated, 2 % failed, 2 % running;
four steps each, attempts for a sample), then calls each endpoint through Django's full request
stack in this process (DRF's APIClient as an admin; no network) and prints p50/p95 per endpoint.
Last line: `worst_p95=…ms`.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FILL_SAGAS = """
INSERT INTO sagas_saga (id, definition_id, definition_name, definition_version, on_failure, correlation_id, status,
                        context, current_step, error, version, event_seq, created_at, updated_at, started_at,
                        finished_at)
SELECT md5('saga' || g)::uuid, %(definition_id)s, 'order-fulfilment', 1, 'compensate', 'order-' || g,
       CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 50 = 1 THEN 'running' WHEN g %% 50 < 5 THEN 'compensated'
            ELSE 'completed' END,
       jsonb_build_object('order_id', g, 'amount', (g %% 500)), '', '', 12, 12,
       now() - g * interval '1 second', now() - g * interval '1 second', now() - g * interval '1 second',
       now() - g * interval '1 second' + interval '80 milliseconds'
FROM generate_series(1, %(count)s) g
"""
FILL_STEPS = """
INSERT INTO sagas_sagastep (saga_id, index, name, action, compensation, max_attempts, backoff_seconds, timeout_seconds,
                            compensate_on_failure, status, resolved_kind, action_attempts, compensation_attempts,
                            round_start, "on", emits, emits_on_failure, compensate_on)
SELECT s.id, st.index, st.name, st.action, st.compensation, 3, 0.2, 30, false, 'succeeded', '', 1, 0, 1, '', '', '',
       '[]'::jsonb
FROM sagas_saga s CROSS JOIN (SELECT index, name, action, compensation FROM sagas_definitionstep
                              WHERE definition_id = %(definition_id)s) st
"""
FILL_ATTEMPTS = """
INSERT INTO sagas_stepattempt (saga_id, step_id, kind, number, status, idempotency_key, started_at, finished_at,
                               lease_expires_at, worker, error, traceback, output, response_excerpt)
SELECT st.saga_id, st.id, 'action', 1, 'succeeded', 'saga:' || st.saga_id || ':' || st.name || ':action',
       now(), now(), now(), 'bench', '', '', NULL, ''
FROM sagas_sagastep st WHERE st.saga_id = ANY(%(ids)s)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sagas", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    database = f"bench_api_{secrets.token_hex(3)}"
    psql(f'CREATE DATABASE "{database}"')
    os.environ.update(DATABASE_URL=f"postgres://root@127.0.0.1:5432/{database}", DJANGO_SETTINGS_MODULE="sagaboard.settings",
                      SAGABOARD_ENQUEUE="false")
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    try:
        import django

        django.setup()
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        else:
            print(f"kept database {database}")


def run(args) -> None:
    from django.core.management import call_command
    from django.db import connection

    from sagas.definitions import latest

    call_command("migrate", verbosity=0)
    call_command("loaddemo", verbosity=0, stdout=open(os.devnull, "w"))
    definition = latest("order-fulfilment")
    begin = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(FILL_SAGAS, {"definition_id": definition.pk, "count": args.sagas})
        cursor.execute(FILL_STEPS, {"definition_id": definition.pk})
        cursor.execute("SELECT id FROM sagas_saga ORDER BY random() LIMIT 1000")
        sample = [row[0] for row in cursor.fetchall()]
        cursor.execute(FILL_ATTEMPTS, {"ids": sample})
        cursor.execute("ANALYZE")
    print(f"filled {args.sagas} sagas and {args.sagas * 4} steps in {time.perf_counter() - begin:.0f} s", flush=True)

    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = APIClient()
    client.force_authenticate(admin)
    rng = random.Random(7)
    endpoints = {
        "list": lambda: "/api/sagas/",
        "list page 50": lambda: "/api/sagas/?page=50",
        "filter status=failed": lambda: "/api/sagas/?status=failed",
        "filter definition": lambda: "/api/sagas/?definition=order-fulfilment&ordering=-updated_at",
        "filter correlation_id": lambda: f"/api/sagas/?correlation_id=order-{rng.randint(1, args.sagas)}",
        "search": lambda: f"/api/sagas/?search=order-{rng.randint(1, args.sagas)}",
        "detail": lambda: f"/api/sagas/{rng.choice(sample)}/",
        "events": lambda: f"/api/sagas/{rng.choice(sample)}/events/",
    }
    worst = 0.0
    for name, path in endpoints.items():
        timings = []
        for _ in range(args.requests):
            url = path()
            start = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (url, response.status_code, response.content[:300])
        timings.sort()
        p50, p95 = statistics.median(timings), timings[int(len(timings) * 0.95) - 1]
        worst = max(worst, p95)
        print(f"{name:24} p50={p50:7.1f} ms  p95={p95:7.1f} ms", flush=True)
    print(f"worst_p95={worst:.1f}ms")


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-qAtc", sql], check=True,
                   stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
