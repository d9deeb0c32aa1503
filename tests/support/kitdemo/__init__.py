"""A CRUD service built from the service kit alone (``tests/protos/kitdemo/v1/widgets.proto``).

It shows what a standard resource needs beyond the kit — a proto, a table, domain rules —
and lets the shared CRUD suite (``tests/support/crud_suite.py``) run against it and agents.
"""
