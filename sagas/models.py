"""The records of sagaboard: definitions, sagas, their steps, attempts, events, alerts and audit.

Records only: nothing here changes a saga's state. Every change goes through `sagas.services`, as
a conditional update on the saga's `version`.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from . import machine


def _choices(enum) -> list[tuple[str, str]]:
    return [(member.value, member.value) for member in enum]


class Definition(models.Model):
    """One version of a saga definition; editing a definition makes a new row."""

    class Mode(models.TextChoices):
        ORCHESTRATION = "orchestration"
        CHOREOGRAPHY = "choreography"

    name = models.SlugField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.ORCHESTRATION)
    on_failure = models.CharField(max_length=20, choices=_choices(machine.OnFailure),
                                  default=machine.OnFailure.COMPENSATE)
    description = models.TextField(blank=True)
    # Choreography: how long a flow may wait for its next event before a WARNING is raised.
    deadline_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ("name", "-version")
        constraints = [models.UniqueConstraint(fields=("name", "version"), name="definition_name_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class StepSettings(models.Model):
    """What a step is: its handlers, retry policy and choreography events. A definition's steps
    hold it; each saga keeps its own copy, so editing a definition never changes a running saga."""

    action = models.CharField(max_length=500)
    compensation = models.CharField(max_length=500, blank=True)
    max_attempts = models.PositiveIntegerField(default=3)
    backoff_seconds = models.FloatField(default=0.5)
    timeout_seconds = models.FloatField(default=30)
    compensate_on_failure = models.BooleanField(default=False)
    # Choreography: the event this step reacts to, what it publishes, and what undoes it.
    on = models.CharField(max_length=100, blank=True)
    emits = models.CharField(max_length=100, blank=True)
    emits_on_failure = models.CharField(max_length=100, blank=True)
    compensate_on = models.JSONField(default=list, blank=True)

    class Meta:
        abstract = True


class DefinitionStep(StepSettings):
    definition = models.ForeignKey(Definition, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ("definition", "index")
        constraints = [
            models.UniqueConstraint(fields=("definition", "index"), name="definition_step_index"),
            models.UniqueConstraint(fields=("definition", "name"), name="definition_step_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Saga(models.Model):
    """One run of a definition version. `version` grows by one on every change of it or its steps."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    definition = models.ForeignKey(Definition, on_delete=models.PROTECT, related_name="sagas")
    # Copied from the definition so that the list filters need no join.
    # Not indexed on its own: saga_definition_created and the unique constraint lead with it.
    definition_name = models.SlugField(max_length=100, db_index=False)
    definition_version = models.PositiveIntegerField()
    on_failure = models.CharField(max_length=20, choices=_choices(machine.OnFailure))
    correlation_id = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=_choices(machine.SagaStatus), default=machine.SagaStatus.PENDING)
    context = models.JSONField(default=dict)
    current_step = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    version = models.PositiveBigIntegerField(default=1)
    event_seq = models.PositiveBigIntegerField(default=0)
    # When the next call is due (after a retry's back-off); recovery leaves the saga alone before.
    wake_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        permissions = [("operate_saga", "Can act on sagas: start, retry, compensate, resolve, acknowledge")]
        constraints = [models.UniqueConstraint(fields=("definition_name", "correlation_id"),
                                               name="saga_definition_correlation")]
        indexes = [
            models.Index(fields=("status", "-created_at"), name="saga_status_created"),
            models.Index(fields=("definition_name", "-created_at"), name="saga_definition_created"),
            models.Index(fields=("correlation_id",), name="saga_correlation"),
            models.Index(fields=("-created_at",), name="saga_created"),
            models.Index(fields=("-updated_at",), name="saga_updated"),
            models.Index(fields=("-finished_at",), name="saga_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.definition_name} {self.id} ({self.status})"


class SagaStep(StepSettings):
    """A step of one saga, with its own copy of the definition step it pinned."""

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="steps",
                             db_index=False)  # saga_step_index leads with it
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=_choices(machine.StepStatus), default=machine.StepStatus.PENDING)
    resolved_kind = models.CharField(max_length=20, choices=_choices(machine.Kind), blank=True)
    # Attempts made so far: a claim for attempt n checks that n - 1 were made, so a duplicate
    # delivery of the same message cannot start a second attempt.
    action_attempts = models.PositiveIntegerField(default=0)
    compensation_attempts = models.PositiveIntegerField(default=0)
    # The first attempt number of the current round: an operator's retry gives a fresh budget.
    round_start = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ("saga", "index")
        constraints = [models.UniqueConstraint(fields=("saga", "index"), name="saga_step_index")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    def idempotency_key(self, kind: str) -> str:
        return f"saga:{self.saga_id}:{self.name}:{kind}"


class StepAttempt(models.Model):
    """One call of a step's action or compensation; a retry is a new row, never an overwrite."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="attempts")
    step = models.ForeignKey(SagaStep, on_delete=models.CASCADE, related_name="attempts",
                             db_index=False)  # attempt_step_kind_number leads with it
    kind = models.CharField(max_length=20, choices=_choices(machine.Kind))
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    idempotency_key = models.CharField(max_length=300)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Past this moment a running attempt is presumed lost with its worker.
    lease_expires_at = models.DateTimeField()
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    output = models.JSONField(null=True, blank=True)
    # HTTP handlers: the status code answered and a bounded excerpt of the body.
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ("step", "started_at", "number")
        constraints = [models.UniqueConstraint(fields=("step", "kind", "number"), name="attempt_step_kind_number")]
        indexes = [models.Index(fields=("lease_expires_at",), name="attempt_running_lease",
                                condition=models.Q(status="running"))]


class SagaEvent(models.Model):
    """The append-only event log of a saga, numbered by `seq` from 1."""

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="events",
                             db_index=False)  # event_saga_seq leads with it
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=50)
    step = models.CharField(max_length=100, null=True, blank=True)
    at = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("saga", "seq")
        constraints = [models.UniqueConstraint(fields=("saga", "seq"), name="event_saga_seq")]


class Alert(models.Model):
    class Severity(models.TextChoices):
        CRITICAL = "CRITICAL"
        WARNING = "WARNING"

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="alerts")
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.TextField()
    open = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=("open", "-created_at"), name="alert_open_created")]


class AuditEntry(models.Model):
    """An operator's action on a saga: who, what, why, and the status before and after."""

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="audit_entries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=20, choices=_choices(machine.OperatorAction))
    reason = models.TextField()
    status_before = models.CharField(max_length=20)
    status_after = models.CharField(max_length=20)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-at", "-id")
        verbose_name_plural = "audit entries"


from .demo.models import Effect  # noqa: E402,F401 (the demo's effects ledger lives in this app)
