"""Saga definitions: the validation rules, saving a new version, and the definition JSON.

One place for the rules, used by the API, the admin, `loaddemo` and the import command, so a
definition is judged the same way wherever it comes from.
"""

from __future__ import annotations

import re

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from . import handlers
from .models import Definition, DefinitionStep

STEP_FIELDS = ("name", "action", "compensation", "max_attempts", "backoff_seconds", "timeout_seconds",
               "compensate_on_failure")
CHOREOGRAPHY_STEP_FIELDS = ("on", "emits", "emits_on_failure", "compensate_on")
DEMO_SERVICES_PATH = "/demo/services/"
LIMITS = {"max_attempts": (1, 100), "backoff_seconds": (0, 3600), "timeout_seconds": (0.1, 86400)}


def handler_problem(handler: str) -> str | None:
    """Why `handler` cannot be called, or None when it can."""
    if not handler:
        return "a handler is required"
    if handlers.is_http(handler):
        return http_url_problem(handler)
    if not handlers.registered(handler):
        return f"no Python step handler is registered as {handler!r}"
    return None


def http_url_problem(url: str) -> str | None:
    """Why the HTTP handler `url` may not be called, or None when it may.

    The URL is parsed by httpx, the same parser that makes the call, so a URL cannot look like
    an allowed host here and reach another one there (`http://evil\\@allowed/` and the like).
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        return f"{url!r} is not a valid URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return f"{url!r}: only http:// and https:// URLs can be called"
    if parsed.userinfo:
        return f"{url!r}: credentials in the URL are not allowed"
    if not parsed.host:
        return f"{url!r} has no host"
    if not http_url_allowed(parsed):
        allowed = ", ".join(settings.SAGABOARD_HTTP_ALLOWLIST) or "none"
        return f"host {_host(parsed)!r} is not in SAGABOARD_HTTP_ALLOWLIST (allowed: {allowed})"
    return None


def http_url_allowed(url: str | httpx.URL) -> bool:
    """Whether the allowlist lets a handler call `url`.

    An allowlist entry is a host (any port) or host:port. Sagaboard's own demo services are allowed
    too, and only them: a URL under `SAGABOARD_PUBLIC_URL` + /demo/services/.
    """
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    host, port = _host(parsed), _port(parsed)
    for entry in settings.SAGABOARD_HTTP_ALLOWLIST:
        allowed_host, allowed_port = _entry(entry)
        if allowed_host == host and allowed_port in (None, port):
            return True
    return _is_own_demo_service(parsed)


def _is_own_demo_service(parsed: httpx.URL) -> bool:
    public = httpx.URL(public_url())
    return (parsed.scheme == public.scheme and _host(parsed) == _host(public) and _port(parsed) == _port(public)
            and parsed.path.startswith(DEMO_SERVICES_PATH))


def public_url() -> str:
    """Where this sagaboard is served (SAGABOARD_PUBLIC_URL), without a trailing slash."""
    return getattr(settings, "SAGABOARD_PUBLIC_URL", "").rstrip("/") or "http://127.0.0.1:8000"


def _host(parsed: httpx.URL) -> str:
    return parsed.host.lower().rstrip(".")


def _port(parsed: httpx.URL) -> int:
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def _entry(entry: str) -> tuple[str, int | None]:
    """An allowlist entry as (host, port or None for any port)."""
    try:
        parsed = httpx.URL(f"http://{entry.strip()}")
    except httpx.InvalidURL:
        return "", None
    return _host(parsed), parsed.port


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


ENGINE_EVENTS = frozenset({
    "SagaStarted", "StepStarted", "StepSucceeded", "StepFailed", "StepRetrying", "CompensationStarted",
    "StepCompensated", "CompensationFailed", "CompensationRetrying", "StepSkipped", "StepResolved", "SagaCompleted",
    "SagaCompensating", "SagaCompensated", "SagaSuspended", "SagaFailed", "OperatorAction", "EventReceived",
})
EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,49}$")


def choreography_problems(steps: list[dict]) -> list[str]:
    """Why a choreography's events do not make a flow (an empty list when they do).

    Every step listens to an event; exactly one listened event is emitted by no step (the start
    event); no step can trigger itself again through the events it causes; every `compensate_on`
    event is emitted by some step, and a step undone by an event has a compensation.
    """
    problems: list[str] = []
    names = [step.get("name") or f"#{n}" for n, step in enumerate(steps, start=1)]
    emitted = {step.get(key) for step in steps for key in ("emits", "emits_on_failure") if step.get(key)}
    for name, step in zip(names, steps, strict=True):
        events = [step.get("on"), step.get("emits"), step.get("emits_on_failure"), *(step.get("compensate_on") or [])]
        for event in filter(None, events):
            if not isinstance(event, str) or not EVENT_NAME.match(event):
                problems.append(f"step {name}: {event!r} is not an event name (a letter, then up to 49 letters, "
                                f"digits, '_', '.' or '-')")
            elif event in ENGINE_EVENTS:
                problems.append(f"step {name}: {event!r} is the name of one of sagaboard's own events")
        if not step.get("on"):
            problems.append(f"step {name}: a choreography step needs the event it reacts to (\"on\")")
        for event in step.get("compensate_on") or []:
            if event not in emitted:
                problems.append(f"step {name}: its compensation would never run: no step emits {event!r}")
        if step.get("compensate_on") and not step.get("compensation"):
            problems.append(f"step {name}: compensate_on is set but the step has no compensation")
    starts = list(dict.fromkeys(step["on"] for step in steps if step.get("on") and step["on"] not in emitted))
    if len(starts) > 1:
        problems.append(f"only one start event may be listened to, but no step emits any of {starts}: "
                        f"every other event a step reacts to must be emitted by some step")
    elif not starts and any(step.get("on") for step in steps):
        problems.append("the flow has no start event: every event a step reacts to is emitted by some step")
    if cycle := _event_cycle(names, steps):
        problems.append(f"the steps trigger themselves in a loop: {' -> '.join(cycle)}")
    return problems


def _event_cycle(names: list[str], steps: list[dict]) -> list[str]:
    """A loop in the graph step -> event it emits -> steps listening to it, as a list of names, or []."""
    listeners: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        if step.get("on"):
            listeners.setdefault(step["on"], []).append(index)
    following = [[(event, after) for event in filter(None, (step.get("emits"), step.get("emits_on_failure")))
                  for after in listeners.get(event, [])] for step in steps]
    state: dict[int, int] = {}  # 1: on the current path, 2: done

    def visit(index: int, path: list[str]) -> list[str]:
        state[index] = 1
        for event, after in following[index]:
            if state.get(after) == 1:
                return path + [names[index], event, names[after]]
            if after not in state and (found := visit(after, path + [names[index], event])):
                return found
        state[index] = 2
        return []

    for index in range(len(steps)):
        if index not in state and (found := visit(index, [])):
            return found
    return []


@transaction.atomic
def save_version(data: dict, user=None) -> tuple[Definition, bool]:
    """Save validated data as the next version of its name; returns (definition, created).

    Saving what the latest version already says creates nothing, so loading the same file twice
    is idempotent. Sagas keep the version they started on: they copied its steps.
    """
    name = data["name"]
    latest = Definition.objects.filter(name=name).order_by("-version").prefetch_related("steps").first()
    if latest is not None and to_json(latest, with_version=False) == normalized(data):
        return latest, False
    number = (Definition.objects.filter(name=name).aggregate(top=Max("version"))["top"] or 0) + 1
    definition = Definition.objects.create(
        name=name, version=number, mode=data.get("mode") or Definition.Mode.ORCHESTRATION,
        on_failure=data.get("on_failure") or "compensate", description=data.get("description") or "",
        deadline_seconds=data.get("deadline_seconds"),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    DefinitionStep.objects.bulk_create(
        DefinitionStep(definition=definition, index=index, **_step_fields(step))
        for index, step in enumerate(data["steps"])
    )
    return definition, True


def _step_fields(step: dict) -> dict:
    fields = {key: step[key] for key in STEP_FIELDS + CHOREOGRAPHY_STEP_FIELDS if step.get(key) is not None}
    fields["compensation"] = fields.get("compensation") or ""
    return fields


def _step_json(step: dict, mode: str) -> dict:
    body = {key: step.get(key) for key in STEP_FIELDS}
    body["compensation"] = step.get("compensation") or None
    if mode == Definition.Mode.CHOREOGRAPHY:
        body.update({key: step.get(key) or "" for key in CHOREOGRAPHY_STEP_FIELDS[:3]},
                    compensate_on=list(step.get("compensate_on") or []))
    return body


def normalized(data: dict) -> dict:
    """The definition JSON of `data` with every default filled in, for comparison."""
    defaults = {f.name: f.default for f in DefinitionStep._meta.get_fields() if f.name in STEP_FIELDS}
    mode = data.get("mode") or "orchestration"
    body = {
        "name": data["name"], "mode": mode,
        "description": data.get("description") or "", "on_failure": data.get("on_failure") or "compensate",
        "steps": [_step_json({**defaults, **_step_fields(step)}, mode) for step in data["steps"]],
    }
    if mode == Definition.Mode.CHOREOGRAPHY:
        body["deadline_seconds"] = data.get("deadline_seconds")
    return body


def to_json(definition: Definition, with_version: bool = True) -> dict:
    """The contract's definition JSON (choreography definitions add their event fields)."""
    body = {
        "name": definition.name, "mode": definition.mode, "description": definition.description,
        "on_failure": definition.on_failure,
        "steps": [_step_json({key: getattr(s, key) for key in STEP_FIELDS + CHOREOGRAPHY_STEP_FIELDS},
                             definition.mode) for s in definition.steps.all()],
    }
    if definition.mode == Definition.Mode.CHOREOGRAPHY:
        body["deadline_seconds"] = definition.deadline_seconds
    if with_version:
        body = {"name": body.pop("name"), "version": definition.version, **body}
    return body


def latest(name: str) -> Definition | None:
    return Definition.objects.filter(name=name).order_by("-version").first()


def version(name: str, number: int) -> Definition | None:
    return Definition.objects.filter(name=name, version=number).prefetch_related("steps").first()


# --- comparing versions ------------------------------------------------------------------------

DEFINITION_FIELDS = ("mode", "description", "on_failure", "deadline_seconds")


def diff(old: Definition, new: Definition) -> dict:
    """What changed from `old` to `new`: definition fields, and steps added, removed, changed or moved.

    Steps are matched by name, so a renamed step shows as one removed and one added.
    """
    before, after = to_json(old), to_json(new)
    fields = {key: {"from": before.get(key), "to": after.get(key)}
              for key in DEFINITION_FIELDS if before.get(key) != after.get(key)}
    old_steps = {step["name"]: (index, step) for index, step in enumerate(before["steps"])}
    new_steps = {step["name"]: (index, step) for index, step in enumerate(after["steps"])}
    added = [{"name": name, "index": index, "step": step} for name, (index, step) in new_steps.items()
             if name not in old_steps]
    removed = [{"name": name, "index": index, "step": step} for name, (index, step) in old_steps.items()
               if name not in new_steps]
    changed = []
    for name, (_, step) in new_steps.items():
        if name in old_steps:
            was = old_steps[name][1]
            changes = {key: {"from": was.get(key), "to": step.get(key)} for key in step if was.get(key) != step.get(key)}
            if changes:
                changed.append({"name": name, "fields": changes})
    # A step moved when its place among the steps both versions share changed.
    kept_before = [name for name in old_steps if name in new_steps]
    kept_after = [name for name in new_steps if name in old_steps]
    moved = [{"name": name, "from": old_steps[name][0], "to": new_steps[name][0]}
             for position, name in enumerate(kept_after) if kept_before[position] != name]
    steps = {"added": added, "removed": removed, "changed": changed, "moved": moved}
    return {"name": new.name, "from_version": old.version, "to_version": new.version, "fields": fields,
            "steps": steps, "identical": not fields and not any(steps.values())}


# --- import and export -------------------------------------------------------------------------

class InvalidImport(Exception):
    """An import that failed validation; `errors` lists each definition's field errors, in order."""

    def __init__(self, errors: list[dict], message: str):
        super().__init__(message)
        self.errors = errors


def export(names: list[str] | None = None) -> list[dict]:
    """The latest version of each definition (or of those named), as definition JSON, by name."""
    newest: dict[str, Definition] = {}
    found = Definition.objects.prefetch_related("steps").order_by("name", "-version")
    if names:
        found = found.filter(name__in=names)
    for definition in found:
        newest.setdefault(definition.name, definition)
    return [to_json(definition) for definition in newest.values()]


def parse_import(payload) -> list:
    """The definitions in an import: a list of definition JSON, {"definitions": [...]}, or one definition."""
    if isinstance(payload, dict) and isinstance(payload.get("definitions"), list):
        return payload["definitions"]
    if isinstance(payload, dict) and "steps" in payload:
        return [payload]
    if isinstance(payload, list):
        return payload
    raise InvalidImport([], "expected a list of definitions, {\"definitions\": [...]}, or one definition")


def import_definitions(payload, user=None) -> list[tuple[Definition, bool]]:
    """Validate every definition, then save them all in one transaction, or nothing at all.

    Each definition becomes a new version of its name unless the latest version already says the
    same (then nothing is written for it). The `version` in the file is not kept: version numbers
    are this installation's history.
    """
    from .api.serializers import DefinitionSerializer

    items = parse_import(payload)
    if not items:
        raise InvalidImport([], "there are no definitions to import")
    errors: list[dict] = []
    valid: list[dict] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            errors.append({"non_field_errors": ["a definition must be a JSON object"]})
            continue
        serializer = DefinitionSerializer(data=item)
        if serializer.is_valid():
            name = serializer.validated_data["name"]
            errors.append({"name": [f"{name!r} appears twice in this import"]} if name in seen else {})
            seen.add(name)
            valid.append(serializer.validated_data)
        else:
            errors.append(serializer.errors)
    if any(errors):
        bad = [f"#{n} ({item.get('name', '?') if isinstance(item, dict) else '?'})"
               for n, (item, error) in enumerate(zip(items, errors, strict=True), start=1) if error]
        raise InvalidImport(errors, f"nothing was imported: invalid definition {', '.join(bad)}")
    with transaction.atomic():
        return [save_version(data, user) for data in valid]
