"""Run the REST edge.

In front of any gRPC server, knowing nothing of Vocelio::

    python -m gateway_rest --descriptor-set FILE --upstream HOST:PORT --listen HOST:PORT

In front of the Vocelio mesh (``make run`` runs it inside the supervisor instead)::

    python -m gateway_rest --mesh [--listen HOST:PORT] [--exit-with-parent PID]

``VOCELIO_EDGE_WORKERS`` worker processes (default: one per CPU) serve the one port
(``gateway_rest/workers.py``); with one, this process serves it itself. SIGTERM drains:
``/readyz`` turns 503, requests are served for ``VOCELIO_SHUTDOWN_DRAIN`` seconds more.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import pathlib
import socket
import sys

from starlette.applications import Starlette

from gateway_rest.app import create_app
from gateway_rest.descriptors import Catalog
from gateway_rest.docs import docs_routes, openapi_route
from gateway_rest.mesh_upstreams import edge_options, mesh_app
from gateway_rest.openapi import build_openapi
from gateway_rest.serving import listening_socket, serve
from gateway_rest.serving import run as run_on_uvloop
from gateway_rest.upstreams import Upstream, Upstreams
from gateway_rest.workers import EdgeWorkers
from mesh import logs
from mesh.config import ConfigError, Settings
from mesh.registry import default_registry
from mesh.telemetry import tracing


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def generic_app(descriptor_set: pathlib.Path, upstream: str, settings: Settings) -> Starlette:
    """The edge in front of one arbitrary gRPC server described by a descriptor set."""
    catalog = Catalog.from_file(descriptor_set)
    services = tuple(service.full_name for service in catalog.services)
    upstreams = Upstreams([Upstream(name="upstream", title=upstream, address=upstream, services=services)])
    title = ", ".join(sorted(s.name for s in catalog.services)) or "gRPC API"
    document = functools.partial(build_openapi, catalog, title=title, version="v1")
    return create_app(
        upstreams,
        catalog,
        options=edge_options(settings),
        cors_origins=settings.edge_cors_origins,
        extra_routes=[openapi_route(document), *docs_routes(title=f"{title} reference")],
        health_timeout=settings.health_probe_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m gateway_rest", description="REST/JSON transcoding edge for gRPC")
    parser.add_argument("--descriptor-set", type=pathlib.Path, help="FileDescriptorSet of the upstream's services")
    parser.add_argument("--upstream", help="HOST:PORT of the gRPC server")
    parser.add_argument("--listen", type=_address, help="HOST:PORT to listen on")
    parser.add_argument("--mesh", action="store_true", help="front the Vocelio mesh described by the registry")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", help="stop when process PID is gone")
    parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # a worker of gateway_rest/workers.py
    edge_argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(edge_argv)
    try:
        settings = Settings.from_environ(os.environ)
        # before the app: it traces only if tracing is configured when it is built
        traces = tracing.configure("edge", os.environ)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if args.mesh:
        host, port = args.listen or (settings.edge_bind_host, settings.edge_listen_port)
    else:
        if not (args.descriptor_set and args.upstream and args.listen):
            parser.error("give --descriptor-set, --upstream and --listen (or --mesh)")
        if not args.descriptor_set.is_file():
            parser.error(f"--descriptor-set {args.descriptor_set}: no such file")
        _address(args.upstream)
        host, port = args.listen
    logs.configure(settings.log_level, "gateway_rest", settings.log_format)

    def app() -> Starlette:
        if args.mesh:
            return mesh_app(default_registry(), settings)
        return generic_app(args.descriptor_set, args.upstream, settings)

    try:
        if args.worker_fd is not None:
            return run_on_uvloop(
                serve(app(), socket.socket(fileno=args.worker_fd), settings, parent_pid=args.exit_with_parent)
            )
        try:
            sock = listening_socket(host, port)
        except OSError as error:
            print(f"the edge cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
            return 1
        count = settings.edge_worker_count
        if count == 1:
            return run_on_uvloop(serve(app(), sock, settings, parent_pid=args.exit_with_parent))
        workers = EdgeWorkers(edge_argv, sock, settings, os.environ, count=count, parent_pid=args.exit_with_parent)
        return asyncio.run(workers.run())
    finally:
        traces.shutdown()


if __name__ == "__main__":
    sys.exit(main())
