"""Where the CPU goes: one round of bench/engine.py's two sides, with the CPU seconds each group of
processes used, per saga (or chain).

    .venv/bin/python bench/engine_cpu.py [--sagas 300]

Same set-up as bench/engine.py (its own database, Redis db 14, one `celery worker -P prefork -c 2`).
The groups: `celery` (the worker and its children), `postgres` (the server's processes but the
driver's own backend), `pg-driver` (that backend), `driver` (this process: starting sagas, waiting),
`redis`, `other`. The machine has 2 cores, so throughput is about 2,000 / total ms per saga.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import engine  # noqa: E402


def cpu_seconds_by_group(driver_backend: int) -> collections.Counter:
    used: collections.Counter = collections.Counter()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        if int(pid) == driver_backend:
            group = "pg-driver"
        elif "postgres" in command or "postgres" in stat[:40]:
            group = "postgres"
        elif "redis" in command:
            group = "redis"
        elif "celery" in command:
            group = "celery"
        elif int(pid) == os.getpid():
            group = "driver"
        else:
            group = "other"
        used[group] += seconds
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sagas", type=int, default=300)
    args = parser.parse_args()
    with engine.production_topology("bench_cpu", concurrency=2):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            driver_backend = cursor.fetchone()[0]
        for label, run in (("bare", engine.run_bare), ("engine", engine.run_engine)):
            before, started = cpu_seconds_by_group(driver_backend), time.perf_counter()
            rate = run(args.sagas, 7)
            took, after = time.perf_counter() - started, cpu_seconds_by_group(driver_backend)
            per_saga = {group: round((after[group] - before[group]) / args.sagas * 1000, 2) for group in after}
            print(f"{label}: {rate:.1f}/s in {took:.1f} s; CPU ms per saga {per_saga}; "
                  f"total {sum(per_saga.values()):.1f}")


if __name__ == "__main__":
    main()
