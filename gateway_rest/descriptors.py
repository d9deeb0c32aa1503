"""What the edge knows about its upstreams: a descriptor set, read once.

Every method with a ``google.api.http`` rule becomes one :class:`Binding` per rule
(the primary one and each of ``additional_bindings``). Message classes are built from
the descriptor pool, so the edge fronts any gRPC service without its generated code.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory

from gateway_rest.path_template import PathTemplate, parse

_HTTP_OPTION: Any = annotations_pb2.http
_VERBS = ("get", "put", "post", "delete", "patch")


@dataclasses.dataclass(frozen=True, slots=True)
class Binding:
    """One REST route onto one gRPC method.

    Attributes:
        http_method: upper-case HTTP method.
        template: the parsed path template.
        body: ``""`` (no body), ``"*"`` or a top-level request field name.
        response_body: ``""`` (the whole response) or a response field name.
        method: the gRPC method.
        grpc_path: ``/package.Service/Method``.
        request_class: message class of the request.
        response_class: message class of the response.

    """

    http_method: str
    template: PathTemplate
    body: str
    response_body: str
    method: descriptor.MethodDescriptor
    grpc_path: str
    request_class: Any
    response_class: Any

    @property
    def server_streaming(self) -> bool:
        """The method answers with a stream."""
        return bool(self.method.server_streaming)

    @property
    def client_streaming(self) -> bool:
        """The method takes a stream."""
        return bool(self.method.client_streaming)

    @property
    def service_name(self) -> str:
        """Full name of the service."""
        return str(self.method.containing_service.full_name)


class Catalog:
    """The services of a descriptor set and their REST bindings."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        # The raw files keep source_code_info (the comments), which the pool does not expose.
        self.file_protos = list(fds.file)
        self.pool = descriptor_pool.DescriptorPool()
        for file in fds.file:
            self.pool.Add(file)
        self.files = [self.pool.FindFileByName(f.name) for f in fds.file]
        self.services = [s for f in self.files for s in f.services_by_name.values()]
        self.bindings: list[Binding] = []
        self._classes: dict[str, Any] = {}
        for service in self.services:
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(_HTTP_OPTION):
                    continue
                rule: http_pb2.HttpRule = options.Extensions[_HTTP_OPTION]
                for each in [rule, *rule.additional_bindings]:
                    self.bindings.append(self._binding(method, each))

    @classmethod
    def from_file(cls, path: pathlib.Path) -> Catalog:
        """Read a ``FileDescriptorSet`` file."""
        return cls(descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()))

    def message_class(self, full_name: str) -> Any:
        """The Python class of a message in this catalogue's pool."""
        cls = self._classes.get(full_name)
        if cls is None:
            cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))
            self._classes[full_name] = cls
        return cls

    def _binding(self, method: descriptor.MethodDescriptor, rule: http_pb2.HttpRule) -> Binding:
        kind = rule.WhichOneof("pattern")
        if kind == "custom":
            http_method, path = rule.custom.kind.upper(), rule.custom.path
        elif kind in _VERBS:
            http_method, path = kind.upper(), getattr(rule, kind)
        else:
            raise ValueError(f"{method.full_name}: HttpRule without a pattern")
        return Binding(
            http_method=http_method,
            template=parse(path),
            body=rule.body,
            response_body=rule.response_body,
            method=method,
            grpc_path=f"/{method.containing_service.full_name}/{method.name}",
            request_class=self.message_class(method.input_type.full_name),
            response_class=self.message_class(method.output_type.full_name),
        )
