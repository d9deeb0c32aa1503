"""Every non-idempotent method can be retried safely: its request has an AIP-155 ``request_id``.

A method the contract does not mark ``idempotent`` (creates, unsafe custom methods,
internal mutations) repeats its effect when a client retries it after a lost reply, unless
the request carries an idempotency key the service deduplicates on. So every such method's
request has ``string request_id``, a UUID4 by its ``buf.validate`` rule (the REST edge fills
it from ``Idempotency-Key``). The exceptions below say why a retry is harmless without it.
"""

from __future__ import annotations

import pytest
from google.api import field_info_pb2
from google.protobuf import descriptor

from mesh.registry import MethodSpec, default_registry

REGISTRY = default_registry()
FIELD = "request_id"
# gRPC path → why retrying it without a request_id does no harm.
EXCEPTIONS = {
    # A token grant creates nothing a client can hold twice by mistake: a retried grant issues
    # another short-lived token (the refresh token of the lost reply is never seen and expires),
    # and OAuth 2.0 clients (RFC 6749) have no place to send an idempotency key.
    "/vocelio.identity.v1.IdentityService/IssueToken": "an OAuth token grant; a retry only mints another token",
}
UNSAFE = [
    method
    for service in REGISTRY
    for method in service.methods
    if method.policy is not None and not method.policy.idempotent
]


def _request(method: MethodSpec) -> descriptor.Descriptor:
    return REGISTRY.pool.FindMessageTypeByName(method.input_type)


def test_the_contract_has_non_idempotent_methods_to_check():
    assert len(UNSAFE) > 50


@pytest.mark.parametrize("method", [m for m in UNSAFE if m.path not in EXCEPTIONS], ids=lambda m: m.path)
def test_a_non_idempotent_method_takes_a_uuid4_request_id(method: MethodSpec):
    field = _request(method).fields_by_name.get(FIELD)
    assert field is not None, f"{method.path}: add `string request_id` (AIP-155) or mark the method idempotent"
    assert field.type == descriptor.FieldDescriptor.TYPE_STRING
    assert not field.is_repeated
    info = field.GetOptions().Extensions[field_info_pb2.field_info]
    assert info.format == field_info_pb2.FieldInfo.UUID4, f"{method.path}: request_id must be documented as a UUID4"


@pytest.mark.parametrize("path", sorted(EXCEPTIONS))
def test_every_exception_is_a_real_non_idempotent_method_without_request_id(path: str):
    method = REGISTRY.method(path)
    assert method is not None and method in UNSAFE, f"{path} is not a non-idempotent method; drop the exception"
    assert FIELD not in _request(method).fields_by_name, f"{path} has a request_id now; drop the exception"
