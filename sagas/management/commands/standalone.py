"""Embedded mode: the dashboard, a Celery worker, recovery and demo traffic in one process tree.

No external services: SQLite (WAL), Celery's in-memory broker and Channels' in-memory layer,
running the same tasks, services and consumers as the production topology. Compare `temporal
server start-dev` or `airflow standalone`.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("sagas.standalone")

DEMO_ADMIN = ("admin", "admin")


class Command(BaseCommand):
    help = "Run sagaboard in one process: web (daphne), an in-process Celery worker, recovery, demo traffic."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-demo", action="store_true", help="no demo admin and no demo traffic")
        parser.add_argument("--demo-rate", type=float, default=0.5, help="demo sagas per second (default 0.5)")
        parser.add_argument("--concurrency", type=int, default=8, help="worker threads (default 8)")

    def handle(self, *args, host, port, no_demo, demo_rate, concurrency, **options):
        if not settings.EMBEDDED:
            raise CommandError("standalone runs the embedded broker and channel layer: unset REDIS_URL, or run "
                               "daphne + celery worker + celery beat for the production topology")
        if demo_rate <= 0:
            raise CommandError("--demo-rate must be above 0")
        call_command("migrate", interactive=False, verbosity=0)
        if not os.environ.get("SAGABOARD_PUBLIC_URL"):
            # The demo's HTTP services are this very server: call them where it listens.
            local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
            settings.SAGABOARD_PUBLIC_URL = f"http://{local}:{port}"
        call_command("loaddemo", stdout=self.stdout)
        if not no_demo:
            self._ensure_demo_admin()
        stop = threading.Event()
        start_worker(concurrency)
        threading.Thread(target=recovery_loop, args=(stop,), name="recovery", daemon=True).start()
        if not no_demo:
            threading.Thread(target=demo_loop, args=(stop, demo_rate), name="demo-traffic", daemon=True).start()
        self.stdout.write(f"sagaboard standalone: http://{host}:{port}/ (SQLite {settings.DATABASES['default']['NAME']}, "
                          f"embedded worker x{concurrency}{'' if no_demo else f', demo traffic {demo_rate}/s'})")
        self.stdout.flush()
        try:
            serve(host, port)
        finally:
            stop.set()

    def _ensure_demo_admin(self) -> None:
        from django.contrib.auth import get_user_model

        username, password = DEMO_ADMIN
        users = get_user_model().objects
        if not users.filter(username=username).exists():
            users.create_superuser(username, "admin@example.com", password)
        self.stdout.write(f"demo admin: {username} / {password}")


def start_worker(concurrency: int) -> None:
    """A Celery worker on threads inside this process, consuming the in-memory broker."""
    from celery.worker import WorkController

    from sagaboard.celery import app

    worker = WorkController(app=app, pool_cls="threads", concurrency=concurrency, hostname=f"standalone@{os.getpid()}",
                            without_heartbeat=True, without_mingle=True, without_gossip=True,
                            queues=[settings.CELERY_TASK_DEFAULT_QUEUE])
    threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()


def recovery_loop(stop: threading.Event, every: float = 5.0) -> None:
    """What celery beat does in production: settle lost attempts, wake stalled sagas."""
    from django.db import close_old_connections

    from sagas import services

    while not stop.wait(every):
        try:
            services.recover()
        except Exception:  # noqa: BLE001 (keep recovering; the next round may succeed)
            log.exception("recovery round failed")
        finally:
            close_old_connections()


def demo_loop(stop: threading.Event, rate: float) -> None:
    from sagas.demo import traffic

    try:
        traffic.run(rate, stop=stop)
    except Exception:  # noqa: BLE001
        log.exception("demo traffic stopped")


def serve(host: str, port: int) -> None:
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    from sagaboard.asgi import application

    Server(application=application, endpoints=build_endpoint_description_strings(host=host, port=port),
           signal_handlers=True, verbosity=0).run()
