"""The demo services' effects ledger: one row per idempotency key, whatever the number of calls."""

from django.db import models


class Effect(models.Model):
    idempotency_key = models.CharField(max_length=300)
    service = models.CharField(max_length=50)
    operation = models.CharField(max_length=50)
    correlation_id = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "sagas"
        ordering = ("created_at", "id")
        # As constraints and Meta indexes, not unique=True and db_index=True: those add a second,
        # LIKE-only index on PostgreSQL that every insert would pay for and no query uses.
        constraints = [models.UniqueConstraint(fields=("idempotency_key",), name="effect_idempotency_key")]
        indexes = [models.Index(fields=("correlation_id",), name="effect_correlation")]

    def __str__(self) -> str:
        return self.idempotency_key
