"""Thin Celery tasks: they take ids and call into services; all the rules live there.

`run_step` is acknowledged late and rejected when its worker is lost, so a message is not lost
with a crashing worker; a call that was under way when the worker died is found by `recover`
once its lease expires, and retried per the step's policy.
"""

from __future__ import annotations

from celery import shared_task

from . import execution, services
from .machine import Kind

# A saga's calls made one after another for one message (see run_step).
MAX_CALLS_PER_MESSAGE = 20


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_step(saga_id: str, kind: str, index: int, number: int) -> None:
    worker = run_step.request.hostname or ""
    call = services.claim(saga_id, Kind(kind), index, number, worker=worker)
    # None: not due anymore (a duplicate delivery, or an operator moved the saga on). Otherwise the
    # saga's calls that are due at once follow here, up to a bound, so that one message does not
    # hold a worker (and stay unacknowledged) for a saga of any length.
    calls_left = MAX_CALLS_PER_MESSAGE
    while call is not None:
        outcome = execution.make_call(call)
        calls_left -= 1
        if calls_left == 0:
            services.record_outcome(call, outcome)  # the next call, if any, goes through the broker
            return
        call = services.advance(call, outcome, worker)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def publish_event(saga_id: str, event_type: str = "") -> None:
    """Choreography: apply a received event (and any held event it unblocks); the calls it makes due follow."""
    services.publish_event(saga_id, event_type)


@shared_task(ignore_result=True)
def recover() -> dict:
    return services.recover()


@shared_task(ignore_result=True)
def notify_alert(alert_id: int) -> None:
    """Email at once; the webhook in a task of its own so that its retries do not repeat the email."""
    from django.conf import settings

    from .models import Alert
    from .notifications import email

    alert = Alert.objects.select_related("saga").filter(pk=alert_id).first()
    if alert is None:
        return
    email(alert)
    if settings.SAGABOARD_ALERT_WEBHOOK:
        post_alert_webhook.delay(alert_id)


@shared_task(bind=True, ignore_result=True, max_retries=8, retry_backoff=True, retry_backoff_max=300,
             autoretry_for=(Exception,))
def post_alert_webhook(self, alert_id: int) -> None:
    from .models import Alert
    from .notifications import post_webhook

    alert = Alert.objects.select_related("saga").filter(pk=alert_id).first()
    if alert is not None:
        post_webhook(alert)
