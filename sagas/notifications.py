"""Sending an alert out: email to SAGABOARD_ALERT_EMAILS, JSON POST to SAGABOARD_ALERT_WEBHOOK."""

from __future__ import annotations

import httpx
from django.conf import settings
from django.core.mail import send_mail

from .models import Alert


def email(alert: Alert) -> int:
    if not settings.SAGABOARD_ALERT_EMAILS:
        return 0
    subject = f"[sagaboard {alert.severity}] {alert.saga.definition_name} {alert.saga.correlation_id}"
    return send_mail(subject, alert.message, None, settings.SAGABOARD_ALERT_EMAILS)


def webhook_payload(alert: Alert) -> dict:
    return {
        "id": alert.pk, "saga_id": str(alert.saga_id), "severity": alert.severity, "message": alert.message,
        "open": alert.open, "created_at": alert.created_at.isoformat(),
        "definition": alert.saga.definition_name, "correlation_id": alert.saga.correlation_id,
        "status": alert.saga.status,
    }


def post_webhook(alert: Alert) -> None:
    """POST the alert; raises on a network error or a non-2xx answer so the task retries."""
    response = httpx.post(settings.SAGABOARD_ALERT_WEBHOOK, json=webhook_payload(alert), timeout=10)
    response.raise_for_status()
