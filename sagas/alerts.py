"""Alerts: one CRITICAL when a saga enters `failed`, one WARNING when it enters `suspended`.

Called by services inside the transaction that changes the status. An alert closes itself when
its saga leaves that status. After commit, each raised alert is logged at its own level (logger
`sagas.alerts`, for whatever watches the server's logs), goes out as a live message, and is
notified (email, webhook) through a Celery task so the engine never waits on it.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from . import events
from .machine import SagaStatus
from .models import Alert, Saga

log = logging.getLogger(__name__)

RAISED_BY = {
    SagaStatus.FAILED: Alert.Severity.CRITICAL,
    SagaStatus.SUSPENDED: Alert.Severity.WARNING,
}


def status_changed(saga: Saga, old_status: str, new_status: str) -> None:
    if old_status in RAISED_BY and old_status != new_status:
        closed = list(Alert.objects.filter(saga=saga, open=True, severity=RAISED_BY[old_status]))
        Alert.objects.filter(pk__in=[a.pk for a in closed]).update(open=False, closed_at=timezone.now())
        for alert in closed:
            alert.open = False
            events.alert_after_commit(alert)
    severity = RAISED_BY.get(new_status)
    if severity is None:
        return
    _raised(Alert.objects.create(saga=saga, severity=severity, message=_message(saga, new_status)))


def waited_too_long(saga: Saga, deadline_seconds: float, waiting_for: list[str]) -> Alert:
    """Choreography: a WARNING when a flow has waited longer than its deadline for its next event."""
    expected = ", ".join(waiting_for) or "its next event"
    alert = Alert.objects.create(saga=saga, severity=Alert.Severity.WARNING, message=(
        f"WARNING: saga {saga.definition_name} {saga.pk} ({saga.correlation_id}) has waited more than "
        f"{deadline_seconds:g} s for its next event (expected: {expected})."))
    _raised(alert)
    return alert


def _raised(alert: Alert) -> None:
    events.alert_after_commit(alert)
    level = logging.CRITICAL if alert.severity == Alert.Severity.CRITICAL else logging.WARNING
    message, alert_id = alert.message.removeprefix(f"{alert.severity}: "), alert.pk  # the log line has the level

    def announce() -> None:
        log.log(level, "%s (alert %s)", message, alert_id)
        _notify(alert_id)

    transaction.on_commit(announce)


def _message(saga: Saga, status: str) -> str:
    if status == SagaStatus.FAILED:
        head = f"CRITICAL: saga {saga.definition_name} {saga.pk} ({saga.correlation_id}) failed: a compensation " \
               f"failed after its retries. A person must step in."
    else:
        head = f"WARNING: saga {saga.definition_name} {saga.pk} ({saga.correlation_id}) is suspended and waits " \
               f"for an operator."
    return f"{head} Last error: {saga.error}" if saga.error else head


def _notify(alert_id: int) -> None:
    from .tasks import notify_alert

    notify_alert.delay(alert_id)
