"""sagaboard: watch distributed transactions (sagas) live and put them right when they break."""

from .celery import app as celery_app

__all__ = ("celery_app",)
