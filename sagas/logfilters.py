"""Logging filters named in settings.LOGGING (imported while logging is configured, before the
apps are ready: nothing from Django's apps here)."""

from __future__ import annotations

import logging


class QuietInjectedFailures(logging.Filter):
    """Keeps django.request from logging each injected failure of the demo's HTTP services
    (sagas/demo/http_services.py: a 503 under /demo/services/) as an ERROR: they fail on purpose,
    and the engine records each in its attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        injected = getattr(record, "status_code", None) == 503 and request is not None \
            and request.path.startswith("/demo/services/")
        return not injected
