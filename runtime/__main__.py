"""Command line of the runtime.

python -m runtime run                 # the whole mesh, supervised (make run)
python -m runtime serve NAME [NAME…]  # serve services in this process
python -m runtime serve --all [--with-edge]
python -m runtime serve --edge-only
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
        logs.configure(settings.log_level, "migrate")
        for spec in _select(registry, args.names, False):
            migrations.upgrade(ServiceDatabase(settings, spec.name))
            print(f"migrated {spec.name}")
        return 0
    if args.command == "serve":
        specs = [] if args.edge_only else _select(registry, args.names, args.all)
        process = "edge" if args.edge_only else specs[0].name if len(specs) == 1 else "mesh"
        logs.configure(settings.log_level, process)
        try:
            traces = tracing.configure(process, os.environ)
        except ConfigError as error:
            print(f"vocelio: configuration error: {error}", file=sys.stderr)
            return 2
        from runtime.serve import serve as serve_services

        with_edge = args.with_edge or args.edge_only
        try:
            asyncio.run(
                serve_services(specs, settings, registry, with_edge=with_edge, parent_pid=args.exit_with_parent)
            )
        finally:
            traces.shutdown()
        return 0
    logs.configure(settings.log_level, "supervisor")
    from runtime.supervisor import Supervisor

    return asyncio.run(Supervisor(settings, registry).run())


if __name__ == "__main__":
    sys.exit(main())
