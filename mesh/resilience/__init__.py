"""Pure resilience logic the client interceptors apply: circuit breaking and deadline budgets."""
