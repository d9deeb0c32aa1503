"""Command line of the runtime.

python -m runtime run                 # the whole mesh, supervised (make run)
python -m runtime serve NAME [NAME…]  # serve services in this process
python -m runtime serve --all [--with-edge]
python -m runtime serve --edge-only     # the REST edge alone (python -m gateway_rest --mesh), its workers
python -m runtime migrate [NAME…]     # apply migrations (make migrate)
python -m runtime services            # list the registry
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mesh import logs, migrations
from mesh.config import ConfigError, Settings
from mesh.db import ServiceDatabase
from mesh.registry import Registry, ServiceSpec, default_registry
from mesh.telemetry import tracing


def _select(registry: Registry, names: list[str], everything: bool) -> list[ServiceSpec]:
    if everything or not names:
        return list(registry)
    unknown = [n for n in names if n not in {s.name for s in registry}]
    if unknown:
        raise SystemExit(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(s.name for s in registry)}")
    return [registry.service(n) for n in names]


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Vocelio mesh runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start and supervise the whole mesh")
    serve = commands.add_parser("serve", help="serve services in this process")
    serve.add_argument("names", nargs="*")
    serve.add_argument("--all", action="store_true", help="every service")
    serve.add_argument("--with-edge", action="store_true", help="also run the REST edge in this process")
    serve.add_argument("--edge-only", action="store_true", help="run only the REST edge in this process")
    serve.add_argument("--exit-with-parent", type=int, metavar="PID", help="stop when process PID is gone")
    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("names", nargs="*")
    commands.add_parser("services", help="list the services of the registry")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_environ(os.environ)
    except ConfigError as error:
        print(f"vocelio: configuration error: {error}", file=sys.stderr)
        return 2
    registry = default_registry()

    if args.command == "services":
        for spec in registry:
            print(
                f"{spec.name:<18} {settings.port_for(spec.contract_port):>5}  "
                f"{spec.full_name}  ({len(spec.methods)} methods)"
            )
        return 0
    if args.command == "migrate":
        logs.configure(settings.log_level, "migrate", settings.log_format)
        for spec in _select(registry, args.names, False):
            migrations.upgrade(ServiceDatabase(settings, spec.name))
            print(f"migrated {spec.name}")
        return 0
    if args.command == "serve" and args.edge_only:
        # The edge alone is the REST edge's own command, with its worker processes.
        from gateway_rest.__main__ import main as edge_main

        parent = ["--exit-with-parent", str(args.exit_with_parent)] if args.exit_with_parent else []
        return edge_main(["--mesh", *parent])
    if args.command == "serve":
        specs = _select(registry, args.names, args.all)
        process = specs[0].name if len(specs) == 1 else "mesh"
        logs.configure(settings.log_level, process, settings.log_format)
        try:
            traces = tracing.configure(process, os.environ)
        except ConfigError as error:
            print(f"vocelio: configuration error: {error}", file=sys.stderr)
            return 2
        from runtime.serve import serve as serve_services

        try:
            asyncio.run(
                serve_services(specs, settings, registry, with_edge=args.with_edge, parent_pid=args.exit_with_parent)
            )
        finally:
            traces.shutdown()
        return 0
    # The supervisor's output is the operator's console (its children's go to var/log as JSON).
    logs.configure(settings.log_level, "supervisor", "text" if settings.log_format == "auto" else settings.log_format)
    from runtime.supervisor import Supervisor

    return asyncio.run(Supervisor(settings, registry).run())


if __name__ == "__main__":
    sys.exit(main())
