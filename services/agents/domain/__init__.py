"""Pure rules of the agents service: no gRPC, no database, no clock, no randomness it cannot be given.

- ``names`` — resource names and ids;
- ``validation`` — what a valid agent and agent configuration look like;
- ``masks`` — update masks (AIP-134);
- ``lifecycle`` — the state machine, publishing and etags;
- ``filtering`` — the ``ListAgents`` filter language;
- ``paging`` — page sizes and tamper-proof page tokens (AIP-158);
- ``tenancy`` — which organisation's agents a caller may read and change.
"""
