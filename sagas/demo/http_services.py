"""The demo services over HTTP, for `order-fulfilment-http`: /demo/services/<service>/<operation>/.

Each view is the matching Python demo handler (`demo.<service>.<operation>`) behind an HTTP
endpoint, so the same fault injection and the same effects ledger apply: the engine's request
body and `Idempotency-Key` header become the handler's `StepCall`. An injected failure answers
503 (the engine retries), a bad request 400 (it does not), success 200 with the handler's result.

The engine calls these without a user, so they take no session, need no CSRF token and accept
only POST with a JSON object.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import handlers
from . import handlers as demo_handlers  # noqa: F401 (registers the demo handlers)
from .handlers import InjectedFailure

SERVICES = {
    "inventory": ("reserve", "release"),
    "payment": ("charge", "refund"),
    "shipping": ("create", "cancel"),
    "notification": ("send",),
}


@csrf_exempt
@require_POST
def service(request: HttpRequest, service: str, operation: str) -> JsonResponse:
    if operation not in SERVICES.get(service, ()):
        return JsonResponse({"error": f"no demo service {service}/{operation}"}, status=404)
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return JsonResponse({"error": "the Idempotency-Key header is required"}, status=400)
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"error": "the body is not JSON"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("context", {}), dict):
        return JsonResponse({"error": "the body must be a JSON object with an object 'context'"}, status=400)
    kind = body.get("kind") or ("compensation" if key.endswith(":compensation") else "action")
    try:
        step = handlers.StepCall.make(
            saga_id=str(body.get("saga_id") or ""), correlation_id=str(body.get("correlation_id") or ""),
            step_name=str(body.get("step") or ""), kind=str(kind), attempt=int(body.get("attempt") or 1),
            idempotency_key=key[:300], context=body.get("context") or {})
    except (TypeError, ValueError):
        return JsonResponse({"error": "'attempt' must be a number"}, status=400)
    try:
        result = handlers.call(f"demo.{service}.{operation}", step)
    except InjectedFailure as exc:
        return JsonResponse({"error": str(exc)}, status=503)
    return JsonResponse(result or {})
