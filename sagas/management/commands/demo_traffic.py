"""Start demo sagas at a steady rate with a realistic mix of outcomes."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sagas import events
from sagas.demo import traffic


class Command(BaseCommand):
    help = "Start demo order sagas at R per second (completions, retries, compensations, a few CRITICAL)."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=1.0, help="sagas per second (default 1)")
        parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
        parser.add_argument("--failure-mix", choices=sorted(traffic.MIXES), default="default")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, rate, duration, failure_mix, seed, **options):
        if settings.EMBEDDED:
            # The sagas land in the shared database; a running `manage.py standalone` picks them up
            # with its recovery round once they have been quiet for SAGABOARD_STALL_SECONDS.
            self.stderr.write("REDIS_URL is unset: no worker listens to this process's in-memory broker; a running "
                              "`manage.py standalone` on the same database takes these sagas up within about "
                              f"{settings.SAGABOARD_STALL_SECONDS:g} s")
        if rate <= 0:
            raise CommandError("--rate must be above 0")
        try:
            started = traffic.run(rate, duration, failure_mix, seed=seed)
        except KeyboardInterrupt:
            started = "some"
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        finally:
            events.wait_until_sent()  # the last sagas' live updates, before this process ends
        self.stdout.write(f"demo traffic: started {started} sagas at {rate}/s ({failure_mix} mix)")
