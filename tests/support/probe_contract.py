"""A throwaway contract built in memory: one service whose methods carry the policies a test needs."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2

from mesh.registry import Registry
from vocelio.api.v1 import policy_pb2

# The generated stubs type extensions loosely (as in mesh.registry).
SERVICE_OPTION: Any = policy_pb2.service
POLICY_OPTION: Any = policy_pb2.policy


def _add_with_dependencies(pool: descriptor_pool.DescriptorPool, file: Any, added: set[str]) -> None:
    if file.name in added:
        return
    for dependency in file.dependencies:
        _add_with_dependencies(pool, dependency, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    pool.Add(proto)
    added.add(file.name)


def probe_registry(package: str, methods: dict[str, tuple[policy_pb2.MethodPolicy, bool]]) -> Registry:
    """A registry of ``<package>.ProbeService`` with ``methods``: name → (policy, server-streaming).

    Every method takes and returns ``google.protobuf.Empty``.
    """
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for file in (empty_pb2.DESCRIPTOR, policy_pb2.DESCRIPTOR):
        _add_with_dependencies(pool, file, added)
    short = package.split(".")[0]
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/probe.proto",
        package=package,
        syntax="proto3",
        dependency=["google/protobuf/empty.proto", "vocelio/api/v1/policy.proto"],
    )
    service = proto.service.add(name="ProbeService")
    service.options.Extensions[SERVICE_OPTION].CopyFrom(
        policy_pb2.ServiceInfo(name=short, default_port=59998, title="Probe")
    )
    for name, (policy, streaming) in methods.items():
        method = service.method.add(
            name=name,
            input_type=".google.protobuf.Empty",
            output_type=".google.protobuf.Empty",
            server_streaming=streaming,
        )
        method.options.Extensions[POLICY_OPTION].CopyFrom(policy)
    pool.Add(proto)
    return Registry(pool, [proto.name])
