"""Server and client interceptors, one concern per module.

Server chain, outermost first: errors → (deadline → tracing → metrics → authentication →
RBAC → rate limit → validation, as later issues add them). ``runtime.server`` composes it.
"""
