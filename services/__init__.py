"""The business services, one package each: ``services/<name>/``.

A service that has an implementation exposes ``services/<name>/service.py`` with
``register(server, context)``.
A service without one answers UNIMPLEMENTED for every method of its contract.
"""
