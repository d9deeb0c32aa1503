"""The service registry, derived from the contracts.

Every service in the descriptor set that carries ``(vocelio.api.v1.service)`` is a mesh
service: its short name, title and port come from that option, its methods and their
policies from the method options. Nothing here is listed by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from vocelio.api.v1 import policy_pb2

# The generated stubs type extensions loosely; these are the typed handles.
_SERVICE_OPTION: Any = policy_pb2.service
_POLICY_OPTION: Any = policy_pb2.policy
_HTTP_OPTION: Any = annotations_pb2.http


# What every service host calls as itself, whatever its contract lists: identity's revocation
# stream (runtime/revocations.py) and audit intake (mesh/kit/audit.py), developer_api's
# API-key check (runtime/security.py) and the event store's append (the outbox relay, mesh/kit/relay.py).
RUNTIME_CALLS = (
    "/vocelio.identity.v1.IdentityService/StreamRevocations",
    "/vocelio.identity.v1.IdentityService/RecordAuditEvent",
    "/vocelio.developer_api.v1.DeveloperApiService/VerifyApiKey",
    "/vocelio.events.v1.EventsService/AppendToStream",
)


class RegistryError(ValueError):
    """The contracts describe an inconsistent mesh (duplicate names or ports)."""


@dataclasses.dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC as the contract declares it.

    Attributes:
        name: the method's simple name (``GetAgent``).
        path: the gRPC path (``/vocelio.agents.v1.AgentsService/GetAgent``).
        input_type: full name of the request message.
        output_type: full name of the response message.
        client_streaming: the client sends a stream.
        server_streaming: the server answers with a stream.
        policy: the method's ``(vocelio.api.v1.policy)``; ``None`` when missing.
        http: the method's ``google.api.http`` rule; ``None`` when missing.

    """

    name: str
    path: str
    input_type: str
    output_type: str
    client_streaming: bool
    server_streaming: bool
    policy: policy_pb2.MethodPolicy | None
    http: http_pb2.HttpRule | None


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One mesh service.

    Attributes:
        name: short name, equal to the proto package segment (``call_center``).
        title: human title (``Call Center``).
        contract_port: the port the contract assigns.
        full_name: the proto service name (``vocelio.call_center.v1.CallCenterService``).
        proto_file: the .proto file that declares the service.
        methods: the RPCs, in declaration order.
        calls: the methods the service calls as itself (``ServiceInfo.calls``, gRPC paths).

    """

    name: str
    title: str
    contract_port: int
    full_name: str
    proto_file: str
    methods: tuple[MethodSpec, ...]
    calls: tuple[str, ...] = ()

    @property
    def package(self) -> str:
        """The proto package (``vocelio.agents.v1``)."""
        return self.full_name.rsplit(".", 1)[0]

    @property
    def pb2_module(self) -> str:
        """Import path of the generated message module."""
        return self.proto_file.removesuffix(".proto").replace("/", ".") + "_pb2"

    @property
    def grpc_module(self) -> str:
        """Import path of the generated stub and servicer module."""
        return self.pb2_module + "_grpc"


class Registry:
    """All mesh services, looked up by short name, proto name or method path."""

    def __init__(self, pool: descriptor_pool.DescriptorPool, files: list[str]) -> None:
        self.pool = pool
        services: list[ServiceSpec] = []
        for file_name in files:
            file = pool.FindFileByName(file_name)
            for service in file.services_by_name.values():
                options = service.GetOptions()
                if not options.HasExtension(_SERVICE_OPTION):
                    continue
                services.append(_service_spec(service, options.Extensions[_SERVICE_OPTION]))
        self.services: tuple[ServiceSpec, ...] = tuple(sorted(services, key=lambda s: s.contract_port))
        self._by_name = _unique(self.services, "name", lambda s: s.name)
        self._by_full_name = _unique(self.services, "proto name", lambda s: s.full_name)
        _unique(self.services, "port", lambda s: str(s.contract_port))
        self._methods = {m.path: m for s in self.services for m in s.methods}

    @classmethod
    def from_descriptor_set(cls, path: pathlib.Path) -> Registry:
        """Build the registry from a ``FileDescriptorSet`` file (``make proto`` writes one)."""
        fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        pool = descriptor_pool.DescriptorPool()
        for file in fds.file:
            pool.Add(file)
        return cls(pool, [f.name for f in fds.file])

    def __iter__(self) -> Iterator[ServiceSpec]:
        return iter(self.services)

    def __len__(self) -> int:
        return len(self.services)

    def service(self, name: str) -> ServiceSpec:
        """The service with this short name.

        Raises:
            KeyError: no such service.

        """
        return self._by_name[name]

    def by_full_name(self, full_name: str) -> ServiceSpec:
        """The service with this proto name."""
        return self._by_full_name[full_name]

    def method(self, path: str) -> MethodSpec | None:
        """The method with this gRPC path, or ``None``."""
        return self._methods.get(path)

    def service_permissions(self, name: str) -> frozenset[str]:
        """The permissions service ``name``'s own token carries: those its calls need.

        Its contract's ``calls`` plus :data:`RUNTIME_CALLS`; a path no method has adds
        nothing (the contract tests refuse one).

        Raises:
            KeyError: no such service.

        """
        spec = self._by_name[name]
        permissions = set()
        for path in (*RUNTIME_CALLS, *spec.calls):
            method = self._methods.get(path)
            if method is not None and method.policy is not None and method.policy.permission:
                permissions.add(method.policy.permission)
        return frozenset(permissions)

    def descriptor(self, service: ServiceSpec) -> descriptor.ServiceDescriptor:
        """The protobuf descriptor of a service, from this registry's pool."""
        return self.pool.FindServiceByName(service.full_name)


def default_descriptor_set() -> pathlib.Path:
    """Where ``make proto`` writes the descriptor set: beside the generated ``vocelio`` package."""
    import vocelio

    return pathlib.Path(next(iter(vocelio.__path__))).parent / "vocelio.binpb"


@functools.cache
def default_registry() -> Registry:
    """The registry of the generated contracts (cached per process)."""
    return Registry.from_descriptor_set(default_descriptor_set())


def _service_spec(service: descriptor.ServiceDescriptor, info: policy_pb2.ServiceInfo) -> ServiceSpec:
    methods = []
    for method in service.methods:
        options = method.GetOptions()
        policy = options.Extensions[_POLICY_OPTION] if options.HasExtension(_POLICY_OPTION) else None
        http = options.Extensions[_HTTP_OPTION] if options.HasExtension(_HTTP_OPTION) else None
        methods.append(
            MethodSpec(
                name=method.name,
                path=f"/{service.full_name}/{method.name}",
                input_type=method.input_type.full_name,
                output_type=method.output_type.full_name,
                client_streaming=method.client_streaming,
                server_streaming=method.server_streaming,
                policy=policy,
                http=http,
            )
        )
    return ServiceSpec(
        name=info.name,
        title=info.title or info.name,
        contract_port=info.default_port,
        full_name=service.full_name,
        proto_file=service.file.name,
        methods=tuple(methods),
        calls=tuple(info.calls),
    )


def _unique(services: tuple[ServiceSpec, ...], what: str, key: Callable[[ServiceSpec], str]) -> dict[str, ServiceSpec]:
    index: dict[str, ServiceSpec] = {}
    for service in services:
        value = key(service)
        if value in index:
            raise RegistryError(
                f"two services share the {what} {value!r}: {index[value].full_name} and {service.full_name}"
            )
        index[value] = service
    return index
