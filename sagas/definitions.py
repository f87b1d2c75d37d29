"""Saga definitions: the validation rules, saving a new version, and the definition JSON.

One place for the rules, used by the API, the admin, `loaddemo` and the import command, so a
definition is judged the same way wherever it comes from.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from . import handlers
from .models import Definition, DefinitionStep

STEP_FIELDS = ("name", "action", "compensation", "max_attempts", "backoff_seconds", "timeout_seconds",
               "compensate_on_failure")
LIMITS = {"max_attempts": (1, 100), "backoff_seconds": (0, 3600), "timeout_seconds": (0.1, 86400)}


def handler_problem(handler: str) -> str | None:
    """Why `handler` cannot be called, or None when it can."""
    if not handler:
        return "a handler is required"
    if handlers.is_http(handler):
        host = urlsplit(handler).hostname
        if not host:
            return f"{handler!r} has no host"
        if not http_host_allowed(handler):
            allowed = ", ".join(settings.SAGABOARD_HTTP_ALLOWLIST) or "none"
            return f"host {host!r} is not in SAGABOARD_HTTP_ALLOWLIST (allowed: {allowed})"
        return None
    if not handlers.registered(handler):
        return f"no Python step handler is registered as {handler!r}"
    return None


def http_host_allowed(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    allowed = {entry.lower() for entry in settings.SAGABOARD_HTTP_ALLOWLIST}
    return host in allowed or f"{host}:{parts.port}" in allowed


def step_problems(steps: list[dict]) -> list[dict]:
    """Per-step field errors (an empty dict for a good step); a step list with no errors is valid."""
    problems: list[dict] = []
    seen: set[str] = set()
    for step in steps:
        errors: dict[str, list[str]] = {}
        name = (step.get("name") or "").strip()
        if not name:
            errors["name"] = ["a step needs a name"]
        elif name in seen:
            errors["name"] = [f"the step name {name!r} is used twice"]
        seen.add(name)
        if problem := handler_problem(step.get("action") or ""):
            errors["action"] = [problem]
        if step.get("compensation") and (problem := handler_problem(step["compensation"])):
            errors["compensation"] = [problem]
        for field_name, (low, high) in LIMITS.items():
            value = step.get(field_name)
            if value is not None and not low <= value <= high:
                errors[field_name] = [f"must be between {low} and {high}"]
        problems.append(errors)
    return problems


@transaction.atomic
def save_version(data: dict, user=None) -> tuple[Definition, bool]:
    """Save validated data as the next version of its name; returns (definition, created).

    Saving what the latest version already says creates nothing, so loading the same file twice
    is idempotent.
    """
    name = data["name"]
    latest = Definition.objects.filter(name=name).order_by("-version").prefetch_related("steps").first()
    if latest is not None and to_json(latest, with_version=False) == normalized(data):
        return latest, False
    number = (Definition.objects.filter(name=name).aggregate(top=Max("version"))["top"] or 0) + 1
    definition = Definition.objects.create(
        name=name, version=number, mode=data.get("mode") or Definition.Mode.ORCHESTRATION,
        on_failure=data.get("on_failure") or "compensate", description=data.get("description") or "",
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    DefinitionStep.objects.bulk_create(
        DefinitionStep(definition=definition, index=index, **_step_fields(step))
        for index, step in enumerate(data["steps"])
    )
    return definition, True


def _step_fields(step: dict) -> dict:
    fields = {key: step[key] for key in STEP_FIELDS if step.get(key) is not None}
    fields["compensation"] = fields.get("compensation") or ""
    return fields


def normalized(data: dict) -> dict:
    """The definition JSON of `data` with every default filled in, for comparison."""
    defaults = {f.name: f.default for f in DefinitionStep._meta.get_fields() if f.name in STEP_FIELDS}
    return {
        "name": data["name"], "mode": data.get("mode") or "orchestration",
        "description": data.get("description") or "", "on_failure": data.get("on_failure") or "compensate",
        "steps": [{key: (_step_fields(step).get(key, defaults.get(key)) if key != "compensation"
                         else step.get("compensation") or None) for key in STEP_FIELDS}
                  for step in data["steps"]],
    }


def to_json(definition: Definition, with_version: bool = True) -> dict:
    """The contract's definition JSON."""
    body = {
        "name": definition.name, "mode": definition.mode, "description": definition.description,
        "on_failure": definition.on_failure,
        "steps": [{"name": s.name, "action": s.action, "compensation": s.compensation or None,
                   "max_attempts": s.max_attempts, "backoff_seconds": s.backoff_seconds,
                   "timeout_seconds": s.timeout_seconds, "compensate_on_failure": s.compensate_on_failure}
                  for s in definition.steps.all()],
    }
    if with_version:
        body = {"name": body.pop("name"), "version": definition.version, **body}
    return body


def latest(name: str) -> Definition | None:
    return Definition.objects.filter(name=name).order_by("-version").first()
