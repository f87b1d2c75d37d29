"""The demo definitions of CONTRACT.md section 6."""

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

DEMO_DEFINITIONS = [ORDER_FULFILMENT]
