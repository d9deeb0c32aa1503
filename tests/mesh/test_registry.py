from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from mesh.registry import Registry, RegistryError, default_descriptor_set, default_registry


def test_lookups():
    registry = default_registry()
    agents = registry.service("agents")
    assert agents.full_name == "vocelio.agents.v1.AgentsService"
    assert agents.pb2_module == "vocelio.agents.v1.agents_service_pb2"
    assert agents.grpc_module == "vocelio.agents.v1.agents_service_pb2_grpc"
    assert registry.by_full_name(agents.full_name) is agents
    method = registry.method("/vocelio.agents.v1.AgentsService/GetAgent")
    assert method is not None
    assert method.policy is not None
    assert method.policy.permission == "agents.get"
    assert registry.method("/nope.Service/Method") is None
    with pytest.raises(KeyError):
        registry.service("nope")


def test_services_are_ordered_by_port():
    ports = [s.contract_port for s in default_registry()]
    assert ports == sorted(ports)


def test_duplicate_ports_are_refused(tmp_path):
    fds = descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_set().read_bytes())
    for file in fds.file:
        if file.name == "vocelio/agents/v1/agents_service.proto":
            clone = descriptor_pb2.FileDescriptorProto()
            clone.CopyFrom(file)
            clone.name = "vocelio/agents_copy/v1/agents_service.proto"
            clone.package = "vocelio.agents_copy.v1"
            for service in clone.service:
                service.name = "CopyService"
            # keep the same (vocelio.api.v1.service) option, hence the same port
            clone.ClearField("message_type")
            for method in clone.service[0].method:
                method.input_type = ".vocelio.agents.v1." + method.input_type.rsplit(".", 1)[1]
                method.output_type = ".vocelio.agents.v1." + method.output_type.rsplit(".", 1)[1]
            clone.dependency.append(file.name)
            fds.file.append(clone)
            break
    path = tmp_path / "dup.binpb"
    path.write_bytes(fds.SerializeToString())
    with pytest.raises(RegistryError, match=r"share the (name|port)"):
        Registry.from_descriptor_set(path)
