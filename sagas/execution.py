"""Making one claimed call: run the handler with its timeout, outside any transaction.

The outcome is returned, never written here: `services.record_outcome` does that. A call that
runs past `timeout_seconds` counts as a failed attempt; its thread is left to finish on its own
(the idempotency key makes a late effect harmless) and whatever it returns is ignored.
"""

from __future__ import annotations

import threading
import traceback

from django.db import close_old_connections, connection

from . import handlers
from .services import Call, Outcome


def make_call(call: Call) -> Outcome:
    step = handlers.StepCall.make(
        saga_id=call.saga_id, correlation_id=call.correlation_id, step_name=call.step_name,
        kind=call.kind.value, attempt=call.number, idempotency_key=call.idempotency_key,
        context=call.context,
    )
    box: dict[str, Outcome] = {}

    def run() -> None:
        try:
            box["outcome"] = _outcome_of(call.handler, step)
        finally:
            if threading.current_thread() is not main_thread:
                connection.close()  # this thread's own connection, opened by the handler

    main_thread = threading.current_thread()
    if call.timeout_seconds <= 0:
        run()
        return box["outcome"]
    worker = threading.Thread(target=run, name=f"step-{call.step_name}", daemon=True)
    worker.start()
    worker.join(call.timeout_seconds)
    if worker.is_alive():
        return Outcome(succeeded=False, error=f"timed out after {call.timeout_seconds:g} s")
    close_old_connections()
    return box["outcome"]


def _outcome_of(handler: str, step: handlers.StepCall) -> Outcome:
    try:
        output = handlers.call(handler, step)
    except handlers.PermanentError as exc:
        return Outcome(succeeded=False, error=_describe(exc), traceback=traceback.format_exc(), permanent=True)
    except Exception as exc:  # noqa: BLE001 (any failure of a handler is an attempt's outcome)
        return Outcome(succeeded=False, error=_describe(exc), traceback=traceback.format_exc())
    return Outcome(succeeded=True, output=output)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
