"""The demo services as step handlers, obeying the fault injection keys of the saga context.

`{"fail": {"<step>": "always" | N}}` fails the step's action always or its first N attempts,
`{"fail_compensation": {...}}` likewise for its compensation, `{"sleep": {"<step>": seconds}}`
makes the action take that long. A call that goes through records its side effect once per
idempotency key, so a retried or redelivered call never records a second one.
"""

from __future__ import annotations

import time

from sagas.handlers import StepCall, step_handler
from sagas.services.sql import Batch

from .models import Effect


class InjectedFailure(Exception):
    """A failure asked for by the saga's context."""


def _should_fail(rule, attempt: int) -> bool:
    if rule == "always":
        return True
    if isinstance(rule, bool):
        return rule
    if isinstance(rule, int | float):
        return attempt <= rule
    return False


def _faults(step: StepCall, key: str) -> dict:
    value = step.context.get(key)
    return value if isinstance(value, dict) else {}


def perform(step: StepCall, service: str, operation: str, result: dict | None = None) -> dict | None:
    """What every demo handler does: obey the faults, then record the effect once."""
    if step.kind == "action":
        seconds = _faults(step, "sleep").get(step.step_name)
        if isinstance(seconds, int | float) and seconds > 0:
            time.sleep(min(float(seconds), 600.0))
    rule = _faults(step, "fail" if step.kind == "action" else "fail_compensation").get(step.step_name)
    if _should_fail(rule, step.attempt):
        raise InjectedFailure(f"{service}.{operation} failed on purpose (attempt {step.attempt}, rule {rule!r})")
    # One row per idempotency key: a repeated call finds the key taken and records nothing.
    ledger = Batch()
    ledger.insert([Effect(idempotency_key=step.idempotency_key, service=service, operation=operation,
                          correlation_id=step.correlation_id)], ignore_conflicts=True)
    ledger.run()
    return result


def _id(prefix: str, step: StepCall) -> str:
    return f"{prefix}-{step.saga_id[:8]}"


@step_handler("demo.inventory.reserve")
def reserve_inventory(step: StepCall) -> dict | None:
    return perform(step, "inventory", "reserve", {"reservation_id": _id("r", step)})


@step_handler("demo.inventory.release")
def release_inventory(step: StepCall) -> dict | None:
    return perform(step, "inventory", "release")


@step_handler("demo.payment.charge")
def charge_payment(step: StepCall) -> dict | None:
    return perform(step, "payment", "charge", {"payment_id": _id("p", step)})


@step_handler("demo.payment.refund")
def refund_payment(step: StepCall) -> dict | None:
    return perform(step, "payment", "refund")


@step_handler("demo.shipping.create")
def create_shipment(step: StepCall) -> dict | None:
    return perform(step, "shipping", "create", {"shipment_id": _id("s", step)})


@step_handler("demo.shipping.cancel")
def cancel_shipment(step: StepCall) -> dict | None:
    return perform(step, "shipping", "cancel")


@step_handler("demo.notification.send")
def send_notification(step: StepCall) -> dict | None:
    return perform(step, "notification", "send", {"notified": True})
