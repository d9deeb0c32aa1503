"""Server side: the caller must hold the permission the contract names for the method.

Runs after authentication. Internal methods (mesh-only) also require a service
principal. Tenancy — a resource of another organisation answering NOT_FOUND — is the
store's job, because only the store knows whose a resource is. The method's policy is
looked up once, when the method is registered.

Deny by default, on its own and not only because authentication refuses unknown methods:
a method the registry does not know, one without a policy, or a non-public one that
names no permission is PERMISSION_DENIED for everyone (services and ``*`` included).
Only infrastructure (health, reflection) and public methods are left as they are.
"""

from __future__ import annotations

from typing import Any

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, Check, Guard, WrapperInterceptor
from mesh.errors import PermissionDenied
from mesh.principal import current_or_none
from mesh.registry import MethodSpec, Registry


def authorized(registry: Registry) -> Guard:
    """The guard that refuses calls whose principal lacks the method's permission (PERMISSION_DENIED).

    Infrastructure and public methods are left as they are; a method without a policy
    (or unknown to the registry) or without a permission never runs.
    """

    def check_for(path: str, _behaviour: Behaviour) -> Check | None:
        if path.startswith(INFRASTRUCTURE):
            return None
        method = registry.method(path)
        policy = method.policy if method is not None else None
        if policy is not None and policy.public:
            return None
        if method is None or policy is None or not policy.permission:
            return _refusal(f"{path} has no access policy naming a permission")
        return _permission_check(method)

    return Guard(check_for)


def check(method: MethodSpec) -> None:
    """Raise PermissionDenied unless the current principal may call the method."""
    assert method.policy is not None
    principal = current_or_none()
    if principal is None:
        raise PermissionDenied("authentication did not run for this method")
    if method.policy.internal and not principal.is_service:
        raise PermissionDenied(f"{method.path} is internal to the mesh")
    if not principal.has(method.policy.permission):
        raise PermissionDenied(f"missing permission {method.policy.permission}")


def _refusal(reason: str) -> Check:
    def refuse(_request: Any, _context: Any) -> None:
        raise PermissionDenied(reason)

    return refuse


def _permission_check(method: MethodSpec) -> Check:
    def permitted(_request: Any, _context: Any) -> None:
        check(method)

    return permitted


class AuthorizationInterceptor(WrapperInterceptor):
    """:func:`authorized` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(authorized(registry))
