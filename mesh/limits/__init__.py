"""Server protection's pure logic: rates, token buckets behind a port, concurrent-stream counts.

No gRPC here; ``interceptors/rate_limit.py``, ``interceptors/stream_limit.py`` and
``interceptors/load_shedding.py`` are the thin wrappers that apply it to calls.
"""
