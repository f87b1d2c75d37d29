"""The demo services' effects ledger: one row per idempotency key, whatever the number of calls."""

from django.db import models


class Effect(models.Model):
    idempotency_key = models.CharField(max_length=300, unique=True)
    service = models.CharField(max_length=50)
    operation = models.CharField(max_length=50)
    correlation_id = models.CharField(max_length=200, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "sagas"
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return self.idempotency_key
