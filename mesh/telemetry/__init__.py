"""Telemetry set-up shared by every process (tracing; metrics and logs have their own modules)."""
