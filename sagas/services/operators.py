"""Operator actions: retry, compensate, resolve; each one audited and logged as an event."""

from __future__ import annotations

from dataclasses import replace

from django.db import transaction
from django.utils import timezone

from .. import machine
from ..machine import Kind
from ..models import AuditEntry, Saga, StepAttempt
from .flows import apply_held
from .state import NotAllowed, after_commit, attempts_made, due_works, load, published_data, write


def act(saga_id: str, action: str, user, reason: str) -> Saga:
    """Apply an operator action; raises NotAllowed (nothing changed) or Conflict (someone was first)."""
    operator_action = machine.OperatorAction(action)
    with transaction.atomic():
        loaded = load(saga_id)
        if loaded is None:
            raise Saga.DoesNotExist(saga_id)
        in_flight = StepAttempt.objects.filter(saga_id=saga_id, status=StepAttempt.Status.RUNNING,
                                               kind=Kind.ACTION).exists()
        try:
            transition = loaded.rules.act(loaded.rule_state, operator_action, in_flight=in_flight)
        except machine.InvalidTransition as exc:
            raise NotAllowed(str(exc)) from None
        now = timezone.now()
        status_before = loaded.saga.status
        step_fields: dict[int, dict] = {}
        if transition.work is not None and operator_action == machine.OperatorAction.RETRY:
            # A fresh round of max_attempts for the step the operator retries.
            stuck = loaded.steps[transition.work.index]
            step_fields[stuck.index] = {"round_start": attempts_made(stuck, transition.work.kind) + 1}
        operator_event = machine.Event("OperatorAction")
        transition = replace(transition, events=(operator_event, *transition.events))
        event_data = {"action": action, "reason": reason, "user": user.get_username(),
                      "status_before": status_before, "status_after": transition.state.status.value}
        write(loaded, transition, now, step_fields=step_fields, saga_fields={"wake_at": None},
               event_data=event_data, data_by_type=published_data(loaded, transition, source="operator",
                                                                   user=user.get_username(), reason=reason))
        AuditEntry.objects.create(saga=loaded.saga, user=user, username=user.get_username(), action=action,
                                  reason=reason, status_before=status_before,
                                  status_after=transition.state.status.value)
        for due in due_works(transition):
            after_commit(loaded.saga, due, attempts_made(loaded.steps[due.index], due.kind) + 1, 0)
        apply_held(loaded, transition, now)
    loaded.saga.refresh_from_db()
    return loaded.saga
