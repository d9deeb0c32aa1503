"""Analytics: read models of the event store's log and their operational resource.

- ``service.py`` — ``register(server, context)``: the servicer and the projections.
- ``servicer.py`` — GetProjection, ListProjections, RebuildProjection; the other methods
  answer UNIMPLEMENTED until their sources (calls, campaigns) exist.
- ``projection.py`` — ``event_counts``: events per organisation, type and UTC day.
"""
