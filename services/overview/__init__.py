"""Overview: the dashboard, served from a read model the event store's log feeds.

- ``service.py`` — ``register(server, context)``: the servicer and the projection.
- ``servicer.py`` — GetOverview and ListRecentActivity over the served copy.
- ``projection.py`` — how each event changes the read model; ``models.py`` — the tables.
"""
