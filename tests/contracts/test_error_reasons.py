"""Every service declares an ErrorReason enum, and code only sends reasons an enum declares.

``google.rpc.ErrorInfo.reason`` is the value name without ``ERROR_REASON_``; its domain is
``<service>.vocelio.com``. The scan reads the source of ``services/`` and ``mesh/``: a literal
``ErrorInfo(reason="…")`` or an ``ERROR_REASON_…`` name that the service's enum lacks fails.
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

from mesh.errors import ErrorReasons
from mesh.registry import default_registry

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = [service.name for service in default_registry()]


def _enum(service: str):
    return importlib.import_module(f"vocelio.{service}.v1.{service}_errors_pb2").ErrorReason


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_declares_its_error_reasons(service: str):
    reasons = ErrorReasons(_enum(service))
    assert reasons.domain == f"{service}.vocelio.com"
    assert _enum(service).Name(0) == "ERROR_REASON_UNSPECIFIED"


def _sources():
    for folder in ("services", "mesh"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _service_of(path: pathlib.Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "services" and len(parts) > 2 else None


def test_code_sends_only_declared_reasons():
    offenders = []
    for path in _sources():
        service = _service_of(path)
        declared = ErrorReasons(_enum(service)).declared() if service in SERVICES else frozenset()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "ErrorInfo":
                for keyword in node.keywords:
                    literal = keyword.value
                    if keyword.arg != "reason" or not isinstance(literal, ast.Constant):
                        continue
                    if literal.value not in declared:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: reason {literal.value!r}")
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name.startswith("ERROR_REASON_") and name.removeprefix("ERROR_REASON_") not in declared:
                offenders.append(
                    f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}: {name} is not declared by {service}"
                )
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_identity_reasons():
    """Guard against a scan that silently checks nothing."""
    source = (ROOT / "services/identity/oauth.py").read_text()
    assert "ERROR_REASON_INVALID_GRANT" in source
    assert "INVALID_GRANT" in ErrorReasons(_enum("identity")).declared()
