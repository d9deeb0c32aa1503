"""RBAC denies by default on its own: no policy, no permission, or no method → PERMISSION_DENIED.

The server under test runs only the error mapper, a wrapper that makes every caller a
service principal holding ``*`` (so authentication cannot be what refuses), and
:func:`interceptors.rbac.authorized` over a registry built from a contract whose methods
have every shape of policy, including none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from interceptors.chain import Behaviour, chained_server
from interceptors.errors import with_errors
from interceptors.rbac import authorized
from mesh.principal import Principal, PrincipalKind, acting_as
from mesh.registry import Registry
from tests.support.grpc_helpers import serving
from vocelio.api.v1 import policy_pb2

SERVICE = "rbacprobe.v1.ProbeService"
# The generated stubs type extensions loosely (as in mesh.registry).
SERVICE_OPTION: Any = policy_pb2.service
POLICY_OPTION: Any = policy_pb2.policy
ROOT = Principal("services/probe", PrincipalKind.SERVICE, "", "SERVICE", frozenset({"*"}))

# method name → its policy (None: the option is missing), and whether it streams
METHODS: dict[str, tuple[dict[str, Any] | None, bool]] = {
    "NoPolicy": (None, False),
    "NoPolicyStream": (None, True),
    "NoPermission": ({"idempotent": True}, False),
    "InternalWithoutPermission": ({"internal": True}, False),
    "Public": ({"public": True}, False),
    "Permitted": ({"permission": "probe.get"}, False),
    "PermittedStream": ({"permission": "probe.list"}, True),
}


def _add_with_dependencies(pool: descriptor_pool.DescriptorPool, file: Any, added: set[str]) -> None:
    if file.name in added:
        return
    for dependency in file.dependencies:
        _add_with_dependencies(pool, dependency, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    pool.Add(proto)
    added.add(file.name)


def _probe_registry() -> Registry:
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for file in (empty_pb2.DESCRIPTOR, policy_pb2.DESCRIPTOR):
        _add_with_dependencies(pool, file, added)
    proto = descriptor_pb2.FileDescriptorProto(
        name="rbacprobe/v1/probe.proto",
        package="rbacprobe.v1",
        syntax="proto3",
        dependency=["google/protobuf/empty.proto", "vocelio/api/v1/policy.proto"],
    )
    service = proto.service.add(name="ProbeService")
    service.options.Extensions[SERVICE_OPTION].CopyFrom(
        policy_pb2.ServiceInfo(name="rbacprobe", default_port=59999, title="RBAC probe")
    )
    for name, (policy, streaming) in METHODS.items():
        method = service.method.add(
            name=name,
            input_type=".google.protobuf.Empty",
            output_type=".google.protobuf.Empty",
            server_streaming=streaming,
        )
        if policy is not None:
            method.options.Extensions[POLICY_OPTION].CopyFrom(policy_pb2.MethodPolicy(**policy))
    pool.Add(proto)
    return Registry(pool, [proto.name])


def _as_root(path: str, behaviour: Behaviour) -> Behaviour:
    async def call(request: Any, context: Any) -> Any:
        with acting_as(ROOT):
            return await behaviour(request, context)

    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        with acting_as(ROOT):
            async for item in behaviour(request, context):
                yield item

    return stream if path.endswith("Stream") else call


@pytest.fixture
async def probe():
    ran: list[str] = []

    def unary(name: str) -> Any:
        async def handler(request: bytes, context: Any) -> bytes:
            ran.append(name)
            return b""

        return grpc.unary_unary_rpc_method_handler(handler)

    def streaming(name: str) -> Any:
        async def handler(request: bytes, context: Any) -> AsyncIterator[bytes]:
            ran.append(name)
            yield b""

        return grpc.unary_stream_rpc_method_handler(handler)

    registry = _probe_registry()
    server = chained_server([with_errors, _as_root, authorized(registry)])
    handlers = {name: (streaming if name.endswith("Stream") else unary)(name) for name in METHODS}
    handlers["NotInTheRegistry"] = unary("NotInTheRegistry")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
    async with serving(server) as channel:
        yield channel, ran


async def _unary(channel: Any, name: str) -> bytes:
    result: bytes = await channel.unary_unary(f"/{SERVICE}/{name}")(b"", timeout=5)
    return result


async def _stream(channel: Any, name: str) -> list[bytes]:
    return [item async for item in channel.unary_stream(f"/{SERVICE}/{name}")(b"", timeout=5)]


@pytest.mark.parametrize("name", ["NoPolicy", "NoPermission", "InternalWithoutPermission", "NotInTheRegistry"])
async def test_a_method_without_a_policy_or_a_permission_is_denied_even_to_a_star_principal(probe, name):
    channel, ran = probe
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _unary(channel, name)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ran == []


async def test_a_streaming_method_without_a_policy_is_denied(probe):
    channel, ran = probe
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stream(channel, "NoPolicyStream")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ran == []


async def test_public_permitted_and_infrastructure_methods_still_run(probe):
    channel, ran = probe
    await _unary(channel, "Public")
    await _unary(channel, "Permitted")
    assert len(await _stream(channel, "PermittedStream")) == 1
    assert ran == ["Public", "Permitted", "PermittedStream"]
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
