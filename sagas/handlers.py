"""The step handler registry: Python callables registered with @step_handler, and how a call is made.

A handler receives a read-only `StepCall` and returns an optional dict that is merged into the
saga's context. Raising any exception fails the attempt (retried per the step's policy);
`PermanentError` fails it without further retries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.conf import settings


class PermanentError(Exception):
    """A failure that another attempt cannot fix (bad input, a refusal): do not retry."""


class HandlerNotFound(PermanentError):
    pass


@dataclass(frozen=True)
class StepCall:
    saga_id: str
    correlation_id: str
    step_name: str
    kind: str
    attempt: int
    idempotency_key: str
    context: Mapping[str, Any]

    @classmethod
    def make(cls, *, context: dict, **fields: Any) -> StepCall:
        return cls(context=MappingProxyType(context), **fields)


Handler = Callable[[StepCall], "dict | None"]
_registry: dict[str, Handler] = {}


def step_handler(name: str) -> Callable[[Handler], Handler]:
    """Register a Python step handler under `name` (e.g. "demo.payment.charge")."""

    def register(function: Handler) -> Handler:
        _registry[name] = function
        return function

    return register


def is_http(handler: str) -> bool:
    return handler.startswith(("http://", "https://"))


def load_handler_modules() -> None:
    for module in settings.SAGABOARD_HANDLER_MODULES:
        importlib.import_module(module)


def registered(name: str) -> bool:
    return name in _registry


def registered_names() -> list[str]:
    return sorted(_registry)


def call(handler: str, step: StepCall) -> dict | None:
    """Run one handler; returns what it returned, raises what it raised."""
    if is_http(handler):
        from .http_handlers import call_http

        return call_http(handler, step)
    function = _registry.get(handler)
    if function is None:
        raise HandlerNotFound(f"no step handler is registered as {handler!r}")
    result = function(step)
    if result is not None and not isinstance(result, Mapping):
        raise PermanentError(f"handler {handler!r} returned {type(result).__name__}, not a dict")
    return dict(result) if result else None
