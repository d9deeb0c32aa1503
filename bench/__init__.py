"""Benchmarks: the REST edge next to direct gRPC, and authentication + RBAC next to none, for the same call.

Run with ``make bench`` (or ``.venv/bin/python -m bench --help`` for the knobs).
"""
