"""Making one claimed call: run the handler with its timeout, outside any transaction.

The outcome is returned, never written here: `services.record_outcome` does that. A call that
runs past `timeout_seconds` counts as a failed attempt.

How the timeout is kept depends on where the call runs. In a process's main thread (a prefork
Celery worker) an interval timer interrupts the handler with `CallTimedOut`, at no cost per
call. Elsewhere (the thread pool of the embedded worker) the handler runs in a thread of its
own that is abandoned when time is up: the idempotency key makes a late effect harmless, and
whatever it returns is ignored.
"""

from __future__ import annotations

import signal
import threading
import traceback
from contextlib import contextmanager

from django.db import connection

from . import handlers
from .services import Call, Outcome


class CallTimedOut(Exception):
    pass


def make_call(call: Call) -> Outcome:
    step = handlers.StepCall.make(
        saga_id=call.saga_id, correlation_id=call.correlation_id, step_name=call.step_name,
        kind=call.kind.value, attempt=call.number, idempotency_key=call.idempotency_key,
        context=call.context,
    )
    if call.timeout_seconds <= 0:
        return _outcome_of(call.handler, step)
    if threading.current_thread() is threading.main_thread():
        return _call_with_timer(call, step)
    return _call_in_thread(call, step)


def _call_with_timer(call: Call, step: handlers.StepCall) -> Outcome:
    try:
        with _alarm(call.timeout_seconds):
            return _outcome_of(call.handler, step)
    except CallTimedOut:
        connection.close()  # the handler may have been cut off mid-query
        return _timed_out(call)


@contextmanager
def _alarm(seconds: float):
    def expire(signum, frame):
        raise CallTimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call_in_thread(call: Call, step: handlers.StepCall) -> Outcome:
    box: dict[str, Outcome] = {}

    def run() -> None:
        try:
            box["outcome"] = _outcome_of(call.handler, step)
        finally:
            connection.close()  # this thread's own connection, opened by the handler

    worker = threading.Thread(target=run, name=f"step-{call.step_name}", daemon=True)
    worker.start()
    worker.join(call.timeout_seconds)
    return _timed_out(call) if worker.is_alive() else box["outcome"]


def _timed_out(call: Call) -> Outcome:
    return Outcome(succeeded=False, error=f"timed out after {call.timeout_seconds:g} s")


def _outcome_of(handler: str, step: handlers.StepCall) -> Outcome:
    try:
        output = handlers.call(handler, step)
    except CallTimedOut:
        raise
    except handlers.PermanentError as exc:
        return Outcome(succeeded=False, error=_describe(exc), traceback=traceback.format_exc(), permanent=True,
                       **_http_details(exc))
    except Exception as exc:  # noqa: BLE001 (any failure of a handler is an attempt's outcome)
        return Outcome(succeeded=False, error=_describe(exc), traceback=traceback.format_exc(), **_http_details(exc))
    return Outcome(succeeded=True, output=output, **_http_details(output))


def _http_details(source: object) -> dict:
    """The status code and body excerpt an HTTP handler's result or error carries (see http_handlers)."""
    return {"http_status": getattr(source, "http_status", None),
            "response_excerpt": getattr(source, "response_excerpt", "")}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
