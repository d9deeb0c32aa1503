"""Events: the event store (EventStoreDB's model over gRPC).

The rooms, top to bottom (imports only go down):

- ``service.py`` — ``register(server, context)``: wires the servicer, the notifier and the
  retention task into a host.
- ``servicer.py`` — one method per RPC: proto in, proto out, one transaction;
  ``subscriptions.py`` — the catch-up-then-live loops of the two Subscribe methods.
- ``convert.py`` — rows ↔ protobuf messages.
- ``store.py`` (the log and its streams) and ``checkpoints.py`` (consumer checkpoints) —
  SQLAlchemy queries, each taking the session; ``models.py`` — the tables.
- ``notifier.py`` — wakes waiting subscribers after each commit; ``retention.py`` — the
  background archiver.
- ``domain/`` — pure rules: names, proposed events and expected versions, filters,
  checkpoint moves. No gRPC, no database.
"""
