"""Demo traffic: start order sagas at a steady rate with a realistic mix of outcomes."""

from __future__ import annotations

import random
import threading
import time
import uuid

from django.conf import settings
from django.db import close_old_connections

from .. import definitions, services
from ..models import Definition

ORCHESTRATION = "order-fulfilment"
CHOREOGRAPHY, CHOREOGRAPHY_SHARE = "order-fulfilment-choreography", 0.2
HTTP, HTTP_SHARE = "order-fulfilment-http", 0.1
STEPS = ("reserve_inventory", "charge_payment", "create_shipment", "send_notification")
COMPENSABLE = STEPS[:3]

# (weight, what the saga context asks of the demo services)
MIXES = {
    "none": [(1.0, lambda rng: {})],
    "default": [
        (0.70, lambda rng: {}),
        (0.10, lambda rng: {"fail": {rng.choice(STEPS): 1}}),  # one transient failure, then success
        (0.12, lambda rng: {"fail": {rng.choice(STEPS[1:]): "always"}}),  # compensated
        (0.05, lambda rng: {"sleep": {rng.choice(STEPS): round(rng.uniform(1, 4), 1)}}),  # slow service
        (0.03, lambda rng: _critical(rng)),  # a compensation fails too: CRITICAL
    ],
    "chaos": [
        (0.35, lambda rng: {}),
        (0.20, lambda rng: {"fail": {rng.choice(STEPS): rng.choice([1, 2])}}),
        (0.25, lambda rng: {"fail": {rng.choice(STEPS[1:]): "always"}}),
        (0.10, lambda rng: {"sleep": {rng.choice(STEPS): round(rng.uniform(0.5, 3), 1)}}),
        (0.10, lambda rng: _critical(rng)),
    ],
}


def _critical(rng: random.Random) -> dict:
    failing = rng.choice(STEPS[1:])
    undone = rng.choice(COMPENSABLE[:STEPS.index(failing)])
    return {"fail": {failing: "always"}, "fail_compensation": {undone: "always"}}


def demo_context(rng: random.Random, mix: str = "default") -> dict:
    weights, makers = zip(*MIXES[mix], strict=True)
    maker = rng.choices(makers, weights=weights)[0]
    return {"order_id": f"o-{uuid.uuid4().hex[:10]}", "amount": round(rng.uniform(5, 500), 2), **maker(rng)}


def pick_definition(rng: random.Random) -> Definition:
    """Most orders orchestrated in-process; one in five choreographed, and one in ten over HTTP when
    sagaboard serves the demo's HTTP services (each only once loaddemo has created it)."""
    roll = rng.random()
    wanted = ORCHESTRATION
    if roll < CHOREOGRAPHY_SHARE:
        wanted = CHOREOGRAPHY
    elif roll >= 1 - HTTP_SHARE and settings.SAGABOARD_DEMO_SERVICES:
        wanted = HTTP
    definition = definitions.latest(wanted)
    if definition is None and wanted != ORCHESTRATION:
        definition = definitions.latest(ORCHESTRATION)
    if definition is None:
        raise LookupError(f"no definition {ORCHESTRATION!r}: run `manage.py loaddemo` first")
    return definition


def start_one(rng: random.Random, definition: Definition, mix: str = "default") -> None:
    context = demo_context(rng, mix)
    services.start_saga(definition, context, f"demo-{context['order_id']}")


def run(rate: float, duration: float | None = None, mix: str = "default",
        stop: threading.Event | None = None, seed: int | None = None) -> int:
    """Start sagas at `rate` per second until `duration` passes or `stop` is set; returns the count."""
    rng = random.Random(seed)
    stop = stop or threading.Event()
    started, begin = 0, time.monotonic()
    try:
        while not stop.is_set() and (duration is None or time.monotonic() - begin < duration):
            # The same services and fault injection keys behind each of the demo's definitions.
            start_one(rng, pick_definition(rng), mix)
            started += 1
            next_at = begin + started / rate
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        close_old_connections()
    return started
