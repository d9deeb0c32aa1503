"""``make bench``: the REST edge next to direct gRPC, auth + RBAC next to none, and the whole server chain.

Three benchmarks, each pinned to the same cores, each comparing a variant with its baseline in one run:

* edge (``bench.edge``): ``GetItem`` through the REST edge (wrk, HTTP/1.1) against the same call as direct
  gRPC (h2load) on one upstream; goal: the edge keeps at least half of direct gRPC's throughput;
* auth (``bench.auth``): ``GetAgent`` on a server with the mesh's authentication + RBAC interceptors against
  the same server without them (h2load, same token on the wire); goal: at most 15% of the throughput lost,
  and the server CPU each call costs, with and without;
* chain (``bench.chain``): a trivial unary method on bare grpc.aio (a), behind ``ServiceHost``'s full chain (b),
  the same without tracing, metrics and per-RPC logs (b0), and through the REST edge with all its workers (c)
  and with one (c1); goals: (b) ≥ 0.8 × (a), (b0 − b) / b ≤ 10%, (c) ≥ 1.5 × (c1).

Every load tool's successes are checked against the server's own count of calls it answered with OK. Exits
non-zero only if something failed to run or the results cannot be trusted; a missed goal prints
``GOAL MISSED`` and still exits 0. ``--skip-edge``, ``--skip-auth`` and ``--skip-chain`` leave one out.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from bench import auth, chain, edge, report
from bench.harness import Outcome, Patience
from bench.processes import REPO, BenchError, terminate_on_sigterm
from bench.tools import check_installed, tool_versions

RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=8, help="seconds per measured run (default 8)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each (default 2)")
    parser.add_argument(
        "--concurrency",
        default="8,1",
        help="comma-separated requests in flight; the first is the throughput pair the goals apply to (default 8,1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="measured runs per scenario, alternating which goes first; the best of them is compared (default 2)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=20,
        help="seconds in all the bench may wait for other processes to quieten before a run (default 20)",
    )
    parser.add_argument(
        "--server-core", type=int, default=0, help="CPU core of the gRPC server(s) under test (default 0)"
    )
    parser.add_argument("--edge-core", type=int, default=1, help="CPU core of the REST edge (default 1)")
    parser.add_argument(
        "--h2load-core", type=int, default=1, help="CPU core of h2load: direct and auth runs (default 1)"
    )
    parser.add_argument("--wrk-core", type=int, default=1, help="CPU core of wrk, edge runs (default 1)")
    parser.add_argument(
        "--chain-rounds",
        type=int,
        default=5,
        help="interleaved rounds of the chain section's scenarios; medians are compared (default 5)",
    )
    parser.add_argument(
        "--chain-duration", type=float, default=2, help="seconds per measured run of the chain section (default 2)"
    )
    parser.add_argument(
        "--chain-warmup", type=float, default=1, help="seconds of warm-up before each chain run (default 1)"
    )
    parser.add_argument("--skip-edge", action="store_true", help="leave out the REST edge benchmark")
    parser.add_argument("--skip-auth", action="store_true", help="leave out the authentication + RBAC benchmark")
    parser.add_argument("--skip-chain", action="store_true", help="leave out the server chain benchmark")
    args = parser.parse_args(argv)
    if args.skip_edge and args.skip_auth and args.skip_chain:
        parser.error("--skip-edge, --skip-auth and --skip-chain together leave nothing to run")
    try:
        args.concurrencies = [int(value) for value in args.concurrency.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--concurrency: expected integers, got {args.concurrency!r}")
    if not args.concurrencies or min(args.concurrencies) < 1:
        parser.error("--concurrency: give at least one positive integer")
    if args.chain_rounds < 1 or args.chain_duration <= 0 or args.chain_warmup < 0:
        parser.error("--chain-rounds must be at least 1, --chain-duration positive, --chain-warmup not negative")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --duration positive, --warmup not negative")
    return args


def run(args: argparse.Namespace) -> int:
    """Set up, run each benchmark asked for, print the summary and save summary.json."""
    check_installed(["h2load", "nghttp", "taskset"] + ([] if args.skip_edge and args.skip_chain else ["wrk"]))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    host = report.machine()
    versions = tool_versions()
    print(f"machine: {host['nproc']} CPUs ({host['cpu_model']}), Linux {host['kernel']}, Python {host['python']}")
    print(f"tools:   {versions['h2load']}; {versions['wrk'].split(' Copyright')[0]}")
    print("stack:   " + ", ".join(f"{name} {version}" for name, version in host["packages"].items()))
    print(
        f"cores:   servers under test on {args.server_core}, edge on {args.edge_core}, "
        f"h2load on {args.h2load_core}, wrk on {args.wrk_core}"
    )
    print(f"runs:    {args.rounds} round(s) of {args.warmup:g}s warm-up + {args.duration:g}s measured per scenario")
    patience = Patience(args.settle)
    runs: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    with terminate_on_sigterm():
        if not args.skip_edge:
            outcomes.append(edge.run(args, out, patience, runs))
        if not args.skip_auth:
            outcomes.append(auth.run(args, out, patience, runs))
        if not args.skip_chain:
            outcomes.extend(chain.run(args, out, patience, runs))

    print()
    print("== summary ==")
    for outcome in outcomes:
        for line in outcome.headline:
            print(line)
    for outcome in outcomes:
        for line in outcome.warnings(outcome.name):
            print(line)
    report.save_summary(
        out / "summary.json",
        {
            "timestamp": stamp,
            "machine": host,
            "tools": versions,
            "config": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "rounds": args.rounds,
                "concurrencies": args.concurrencies,
                "cores": {
                    "server": args.server_core,
                    "edge": args.edge_core,
                    "h2load": args.h2load_core,
                    "wrk": args.wrk_core,
                },
                "benchmarks": [outcome.name for outcome in outcomes],
            },
            **{outcome.name: outcome.summary() for outcome in outcomes},
            "runs": runs,
        },
    )
    print(f"raw outputs and summary.json in {out.relative_to(REPO)}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when the benchmarks ran (goals met or not), 1 when something failed to run."""
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
