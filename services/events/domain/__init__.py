"""The event store's pure rules: names, proposed events and expected versions, filters, checkpoints."""
