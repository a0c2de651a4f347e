"""The secure exchange: a hub service (``service``) and the nbgrader plugin that calls it (``plugin``)."""
