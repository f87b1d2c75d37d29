"""The demo: an order saga over inventory, payment, shipping and notification, with fault injection."""
