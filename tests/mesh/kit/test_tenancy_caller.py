from __future__ import annotations

import grpc
import pytest
from opentelemetry import trace

from mesh.errors import FailedPrecondition, Internal, NotFound, PermissionDenied, Unavailable, Unimplemented
from mesh.kit import tenancy
from mesh.kit.caller import CallerInfo, peer_address, trusted_client_address
from mesh.kit.client_errors import domain_error, translated
from mesh.principal import Principal, PrincipalKind

MEMBER = Principal("users/u1", PrincipalKind.USER, "acme", "ADMIN", frozenset({"*"}))
PLATFORM = Principal("users/root", PrincipalKind.USER, "", "SUPER_ADMIN", frozenset({"*"}))
SERVICE = Principal("services/billing", PrincipalKind.SERVICE, "", "SERVICE", frozenset({"*"}))


def test_members_read_and_list_only_their_organisation():
    assert tenancy.read_scope_for_name(MEMBER, "acme") == tenancy.ReadScope("acme")
    assert tenancy.read_scope_for_name(MEMBER, "globex") is None
    assert tenancy.list_scope(MEMBER, "acme").binding() == "acme"
    for parent in ("globex", "-"):
        with pytest.raises(PermissionDenied) as raised:
            tenancy.list_scope(MEMBER, parent)
        assert raised.value.message == "the caller may not act in the organisation named by parent"


def test_platform_principals_read_everywhere_but_write_only_at_home():
    assert tenancy.list_scope(PLATFORM, "-").everywhere
    assert tenancy.list_scope(SERVICE, "globex") == tenancy.ReadScope("globex")
    assert tenancy.read_scope_for_name(SERVICE, "globex") == tenancy.ReadScope("globex")
    with pytest.raises(FailedPrecondition):
        tenancy.write_organization(PLATFORM, "acme")
    with pytest.raises(PermissionDenied):
        tenancy.require_writable(PLATFORM, "acme", "organizations/acme/agents/a")


def test_another_organisations_resource_is_the_same_not_found_as_a_missing_one():
    assert tenancy.write_organization(MEMBER, "acme") == "acme"
    with pytest.raises(PermissionDenied):
        tenancy.write_organization(MEMBER, "globex")
    with pytest.raises(NotFound) as foreign:
        tenancy.require_writable(MEMBER, "globex", "organizations/globex/agents/a")
    missing = tenancy.not_found("organizations/globex/agents/a")
    assert (foreign.value.code, foreign.value.message) == (missing.code, missing.message)
    tenancy.require_writable(MEMBER, "acme", "organizations/acme/agents/a")


def test_caller_info_never_reads_x_forwarded_for_itself():
    metadata = [
        ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
        ("user-agent", "grpc-python/1.0"),
        ("x-user-agent", "Mozilla/5.0"),
        ("x-request-id", "r" * 300),
        ("traceparent", "00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
        ("bin-bin", b"\x00"),
    ]
    info = CallerInfo.from_metadata(metadata, "ipv4:10.0.0.1:5000")
    assert info.client_address == "10.0.0.1"  # the peer: only the edge's vouched header counts (see below)
    vouched = CallerInfo.from_metadata(metadata, "ipv4:10.0.0.1:5000", client_address="203.0.113.9")
    assert vouched.client_address == "203.0.113.9"
    assert info.user_agent == "Mozilla/5.0"
    assert info.request_id == ""  # 300 characters: not a request id the mesh accepts (nor logs)
    assert info.trace_id == ""  # a traceparent in the metadata is not parsed here: the running span's id counts
    span = trace.NonRecordingSpan(
        trace.SpanContext(int("c" * 32, 16), int("d" * 16, 16), is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    with trace.use_span(span):
        assert CallerInfo.from_metadata(metadata, "ipv4:10.0.0.1:5000").trace_id == "c" * 32
    for given, kept in (("req-1", "req-1"), ("r" * 128, "r" * 128), ("has space", ""), ('"quoted"', "")):
        assert CallerInfo.from_metadata([("x-request-id", given)], "ipv4:10.0.0.1:5000").request_id == kept
    bare = CallerInfo.from_metadata([("user-agent", "curl")], "ipv6:[::1]:5000")
    assert (bare.client_address, bare.user_agent, bare.trace_id) == ("::1", "curl", "")
    assert peer_address("unix:/tmp/sock") == ""


def test_the_trusted_client_address_is_the_forwarded_one_only_when_the_edge_vouches():
    forwarded = [("x-forwarded-for", "203.0.113.9, 10.0.0.1")]
    assert trusted_client_address(forwarded, "ipv4:10.0.0.1:5000", vouched=True) == "203.0.113.9"
    assert trusted_client_address(forwarded, "ipv4:10.0.0.1:5000", vouched=False) == "10.0.0.1"
    assert trusted_client_address([("x-forwarded-for", "not-an-ip")], "ipv6:[::1]:5", vouched=True) == "::1"
    assert trusted_client_address([], "ipv4:10.0.0.1:5000", vouched=True) == "10.0.0.1"


class _RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Unavailable),
        (grpc.StatusCode.INTERNAL, Unavailable),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.INVALID_ARGUMENT, Internal),
        (grpc.StatusCode.UNIMPLEMENTED, Unimplemented),
    ],
)
def test_client_errors_map_onto_domain_errors(code: grpc.StatusCode, expected: type):
    error = domain_error(_RpcError(code, "users/x not found"), "identity", "look up the user")
    assert type(error) is expected
    if expected is NotFound:
        assert error.message == "users/x not found"


def test_overrides_win_and_the_context_manager_translates():
    with (
        pytest.raises(NotFound, match="user not found"),
        translated("identity", "look up the user", {grpc.StatusCode.PERMISSION_DENIED: NotFound("user not found")}),
    ):
        raise _RpcError(grpc.StatusCode.PERMISSION_DENIED)
    with (
        pytest.raises(Unavailable, match="identity could not verify the key right now"),
        translated("identity", "verify the key"),
    ):
        raise _RpcError(grpc.StatusCode.UNAVAILABLE)
