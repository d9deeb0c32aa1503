"""Pure rules of the agents service: no gRPC, no database, no clock, no randomness it cannot be given.

- ``names`` — agent and version names (patterns from the contract, via :mod:`mesh.kit.names`);
- ``validation`` — what a valid agent and agent configuration look like;
- ``lifecycle`` — the state machine and publishing.

Paging, filters, masks, etags and tenancy are the service kit's (:mod:`mesh.kit`).
"""
