"""The mesh vocabulary: configuration, registry, policies, errors, database and health.

This package imports nothing of Vocelio's above it (interceptors, runtime, services);
everything else builds on it.
"""
