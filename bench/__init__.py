"""Benchmarks: the REST edge next to direct gRPC for the same call, on the same upstream server.

Run with ``make bench`` (or ``.venv/bin/python -m bench --help`` for the knobs).
"""
