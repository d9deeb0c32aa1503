"""The service kit: the generic plumbing every Vocelio service uses (see ``mesh/kit/README.md``).

Pure code: nothing here imports a service. Wiring lives in :mod:`runtime`, test helpers in
``tests/support``.
"""
