"""Run the REST edge.

In the mesh (``make run`` does this)::

    python -m gateway_rest --mesh

In front of any gRPC server, knowing nothing of Vocelio::

    python -m gateway_rest --descriptor-set FILE --upstream HOST:PORT --listen HOST:PORT
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import uvicorn
from google.protobuf import descriptor_pb2

from gateway_rest.app import create_app
from gateway_rest.mesh_upstreams import mesh_upstreams
from gateway_rest.upstreams import Upstream, Upstreams
from mesh import logs
from mesh.config import ConfigError, Settings
from mesh.registry import default_registry


def _split_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _generic_upstreams(descriptor_set: str, upstream: str) -> Upstreams:
    fds = descriptor_pb2.FileDescriptorSet.FromString(pathlib.Path(descriptor_set).read_bytes())
    services = tuple(f"{f.package}.{s.name}" if f.package else s.name for f in fds.file for s in f.service)
    return Upstreams([Upstream(name="upstream", title="upstream", address=upstream, services=services)])


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m gateway_rest", description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", action="store_true", help="front the Vocelio mesh described by the registry")
    parser.add_argument("--descriptor-set", help="FileDescriptorSet of the upstream's services")
    parser.add_argument("--upstream", help="HOST:PORT of the gRPC server")
    parser.add_argument("--listen", type=_split_address, help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_environ(os.environ)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, "gateway_rest")
    if args.mesh:
        upstreams = mesh_upstreams(default_registry(), settings)
        host, port = args.listen or (settings.host, settings.edge_listen_port)
    else:
        if not (args.descriptor_set and args.upstream and args.listen):
            parser.error("give --mesh, or all of --descriptor-set, --upstream and --listen")
        upstreams = _generic_upstreams(args.descriptor_set, args.upstream)
        host, port = args.listen
    config = uvicorn.Config(create_app(upstreams), host=host, port=port, log_config=None, access_log=False)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
