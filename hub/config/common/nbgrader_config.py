"""nbgrader settings every server shares: the secure exchange instead of a shared folder."""

c = get_config()  # noqa: F821

for operation in ("exchange", "fetch_assignment", "fetch_feedback", "release_assignment",
                  "release_feedback", "list", "submit", "collect"):
    name = {"exchange": "ServiceExchange", "list": "List"}.get(
        operation, "".join(part.title() for part in operation.split("_")))
    setattr(c.ExchangeFactory, operation, f"hub.exchange.plugin.{name}")
