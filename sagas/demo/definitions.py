"""The demo definitions of CONTRACT.md section 6 (`order-fulfilment`, `order-fulfilment-choreography`),
and `order-fulfilment-http`.

`order-fulfilment-http` is the same order over HTTP: its steps call the demo services that
sagaboard itself serves under /demo/services/ (sagas/demo/http_services.py), at
SAGABOARD_PUBLIC_URL, which HTTP handlers are allowed to call there and nowhere else on it.
"""

from django.conf import settings

ORDER_FULFILMENT = {
    "name": "order-fulfilment",
    "mode": "orchestration",
    "on_failure": "compensate",
    "description": "An order across inventory, payment, shipping and notification, orchestrated.",
    "steps": [
        {"name": "reserve_inventory", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release",
         "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
        {"name": "charge_payment", "action": "demo.payment.charge", "compensation": "demo.payment.refund",
         "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
        {"name": "create_shipment", "action": "demo.shipping.create", "compensation": "demo.shipping.cancel",
         "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
        {"name": "send_notification", "action": "demo.notification.send", "compensation": None,
         "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
    ],
}


def order_fulfilment_http(base_url: str) -> dict:
    """`order-fulfilment` with every handler an HTTP call to the demo services at `base_url`."""
    services = f"{base_url.rstrip('/')}/demo/services"

    def url(handler: str | None) -> str | None:
        if handler is None:
            return None
        _, service, operation = handler.split(".")
        return f"{services}/{service}/{operation}/"

    return {
        **ORDER_FULFILMENT,
        "name": "order-fulfilment-http",
        "description": "The same order, each step an HTTP call to a demo service (served by sagaboard itself).",
        "steps": [{**step, "action": url(step["action"]), "compensation": url(step["compensation"])}
                  for step in ORDER_FULFILMENT["steps"]],
    }


# The same order as events between services (CONTRACT.md section 2, "Choreography"): no step calls
# the next; each reacts to an event and publishes one. A payment failure releases the inventory; a
# shipment failure refunds the payment and releases the inventory too.
ORDER_FULFILMENT_CHOREOGRAPHY = {
    "name": "order-fulfilment-choreography",
    "mode": "choreography",
    "on_failure": "compensate",
    "description": "The same order as events between services: OrderCreated -> InventoryReserved -> "
                   "PaymentProcessed -> ShipmentCreated -> CustomerNotified; PaymentFailed releases the inventory.",
    "deadline_seconds": 60,
    "steps": [
        {"name": "reserve_inventory", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release",
         "on": "OrderCreated", "emits": "InventoryReserved", "compensate_on": ["PaymentFailed", "ShipmentFailed"],
         "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
        {"name": "charge_payment", "action": "demo.payment.charge", "compensation": "demo.payment.refund",
         "on": "InventoryReserved", "emits": "PaymentProcessed", "emits_on_failure": "PaymentFailed",
         "compensate_on": ["ShipmentFailed"], "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
        {"name": "create_shipment", "action": "demo.shipping.create", "compensation": "demo.shipping.cancel",
         "on": "PaymentProcessed", "emits": "ShipmentCreated", "emits_on_failure": "ShipmentFailed",
         "max_attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 30},
        {"name": "send_notification", "action": "demo.notification.send", "compensation": None,
         "on": "ShipmentCreated", "emits": "CustomerNotified", "max_attempts": 3, "backoff_seconds": 0.2,
         "timeout_seconds": 30},
    ],
}

DEMO_DEFINITIONS = [ORDER_FULFILMENT, ORDER_FULFILMENT_CHOREOGRAPHY]


def demo_definitions() -> list[dict]:
    """What `loaddemo` loads: the fixed definitions, and the HTTP one for where sagaboard is served now."""
    return [*DEMO_DEFINITIONS, order_fulfilment_http(settings.SAGABOARD_PUBLIC_URL)]
