"""Agents: AI voice agents, their editable draft and their published versions.

The rooms, top to bottom (imports only go down):

- ``service.py`` — ``register(server, context)``: wires the servicer into a host.
- ``servicer.py`` — one method per RPC: proto in, proto out, one transaction.
- ``convert.py`` — protobuf messages ↔ rows; ``events.py`` — the events it records.
- ``store.py`` — SQLAlchemy queries, each taking the session; ``models.py`` — the tables.
- ``domain/`` — pure rules: names, validation, update masks, the state machine,
  filters, page tokens, tenancy. No gRPC, no database.
- ``usage.py`` — the hook that asks which campaigns and phone numbers use an agent.
"""
