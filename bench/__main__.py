"""``make bench``: the REST edge's throughput and latency next to direct gRPC for the same call.

One upstream (the conformance gRPC server, pinned to one core) is measured twice per concurrency:

* direct: h2load sends ``GetItem`` as raw gRPC over HTTP/2 to the upstream;
* edge: wrk sends ``GET /v1/shelves/s1/items/i1`` over HTTP/1.1 to the REST edge (pinned to the other
  core), which transcodes it to the same ``GetItem`` on the same upstream.

Both tools keep exactly ``concurrency`` requests in flight (h2load: that many connections, one stream each;
wrk: that many keep-alive connections). The upstream counts the calls it answered, so a tool's "success"
(any HTTP 200, whatever the grpc-status) is checked against calls that really succeeded.

Exits non-zero only if something failed to run or the results cannot be trusted; a missed goal prints
``GOAL MISSED`` and still exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc

from bench import report
from bench.processes import REPO, BenchError, Edge, Upstream, busy_seconds, terminate_on_sigterm
from bench.tools import (
    LoadResult,
    ToolRun,
    check_installed,
    grpc_frame,
    h2load_argv,
    nghttp_grpc_status,
    parse_h2load,
    parse_wrk,
    run_tool,
    tool_versions,
    wrk_argv,
)
from conformance.v1 import conformance_pb2 as pb

ITEM = "shelves/s1/items/i1"
GRPC_PATH = "/conformance.v1.ConformanceService/GetItem"
REST_PATH = f"/v1/{ITEM}"
DESCRIPTOR_SET = REPO / "tests" / "gen" / "testing.binpb"
RESULTS = REPO / "bench" / "results"
DIRECT = "direct gRPC (h2load)"
EDGE = "REST edge (wrk)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=8, help="seconds per measured run (default 8)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each (default 2)")
    parser.add_argument(
        "--concurrency",
        default="8,1",
        help="comma-separated requests in flight; the first is the throughput pair the goal applies to (default 8,1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="measured runs per scenario, alternating direct/edge order; the best of them is compared (default 2)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=20,
        help="seconds in all the bench may wait for other processes to quieten before a run (default 20)",
    )
    parser.add_argument("--server-core", type=int, default=0, help="CPU core of the upstream gRPC server (default 0)")
    parser.add_argument("--edge-core", type=int, default=1, help="CPU core of the REST edge (default 1)")
    parser.add_argument("--h2load-core", type=int, default=1, help="CPU core of h2load, direct runs (default 1)")
    parser.add_argument("--wrk-core", type=int, default=1, help="CPU core of wrk, edge runs (default 1)")
    args = parser.parse_args(argv)
    try:
        args.concurrencies = [int(value) for value in args.concurrency.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--concurrency: expected integers, got {args.concurrency!r}")
    if not args.concurrencies or min(args.concurrencies) < 1:
        parser.error("--concurrency: give at least one positive integer")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --duration positive, --warmup not negative")
    return args


class Bench:
    """One benchmark run: the processes, the request, where raw outputs go."""

    def __init__(self, args: argparse.Namespace, out: pathlib.Path, upstream: Upstream, edge: Edge) -> None:
        self.args = args
        self.out = out
        self.upstream = upstream
        self.edge = edge
        self.body = out / "get_item.grpc"
        self.message = pb.GetItemRequest(name=ITEM).SerializeToString()
        self.body.write_bytes(grpc_frame(self.message))
        self.grpc_url = f"http://{upstream.address}{GRPC_PATH}"
        self.rest_url = f"http://{edge.address}{REST_PATH}"
        self.runs: list[dict[str, Any]] = []
        self.patience = args.settle
        """Seconds left to wait, over the whole run, for other processes to leave the CPUs alone."""

    def verify(self) -> dict[str, Any]:
        """Prove both paths answer the benchmark's request correctly before loading them."""
        self.edge.wait_ready(REST_PATH)
        ok_before, failed_before = self.upstream.served()
        with grpc.insecure_channel(self.upstream.address) as channel:
            get_item = channel.unary_unary(GRPC_PATH, request_serializer=None, response_deserializer=pb.Item.FromString)
            try:
                item = get_item(self.body.read_bytes()[5:], timeout=10)
            except grpc.RpcError as error:
                raise BenchError(f"grpcio {GRPC_PATH} with the bench's body failed: {error}") from error
        if item.name != ITEM:
            raise BenchError(f"grpcio GetItem with the bench's body returned name {item.name!r}, expected {ITEM!r}")
        status = nghttp_grpc_status(self.grpc_url, self.body)
        if status != "0":
            raise BenchError(f"nghttp with h2load's exact request got grpc-status {status}")
        body = json.loads(self.edge.get(REST_PATH))
        if body.get("name") != ITEM:
            raise BenchError(f"edge GET {REST_PATH} returned {body!r}")
        ok_after, failed_after = self.upstream.served()
        ok, failed = ok_after - ok_before, failed_after - failed_before
        if ok != 3 or failed:
            raise BenchError(f"upstream counted {ok} OK / {failed} failed for the 3 verification calls")
        print(f"verified: grpcio GetItem with the h2load body → {item.name!r}; nghttp grpc-status {status};")
        print(f"          edge GET {REST_PATH} → 200 {{name: {body['name']!r}}}; upstream counted 3/3 OK calls")
        return {"grpcio_name": item.name, "nghttp_grpc_status": status, "edge_json_name": body["name"]}

    def settle(self) -> None:
        """Wait (within the remaining patience) until other processes use less than a little of the CPUs."""
        start = time.monotonic()
        while self.patience > 0:
            before, ours_before = busy_seconds()[None], self.upstream.cpu_seconds() + self.edge.cpu_seconds()
            time.sleep(0.5)
            after, ours_after = busy_seconds()[None], self.upstream.cpu_seconds() + self.edge.cpu_seconds()
            self.patience -= 0.5
            other = ((after - before) - (ours_after - ours_before)) / 0.5
            if other <= report.NOISY:
                break
        waited = time.monotonic() - start
        if waited > 1:
            print(f"  (waited {waited:.0f}s for other processes to leave the CPUs)", flush=True)

    def _run(self, label: str, argv: list[str], core: int, duration: float) -> ToolRun:
        run = run_tool(argv, core, duration)
        (self.out / f"{label}.txt").write_text(f"$ {' '.join(run.argv)}\n\n{run.output}")
        self.runs.append({"label": label, "argv": run.argv, "wall_s": run.wall_s, "cpu_s": run.cpu_s})
        return run

    def measure(
        self,
        scenario: str,
        label: str,
        argv: Callable[[float, pathlib.Path | None], list[str]],
        parse: Callable[[str, pathlib.Path], LoadResult],
        *,
        through_edge: bool,
        round_number: int,
    ) -> report.Measurement:
        """Warm up, then one measured run with the CPU of every process and the upstream's count around it."""
        self.settle()
        core = self.args.wrk_core if through_edge else self.args.h2load_core
        self._run(f"{label}.warmup", argv(self.args.warmup, None), core, self.args.warmup)
        log = self.out / f"{label}.requests.tsv"
        ok0, failed0 = self.upstream.served()
        server0, edge0, busy0 = self.upstream.cpu_seconds(), self.edge.cpu_seconds(), busy_seconds()
        start = time.monotonic()
        run = self._run(label, argv(self.args.duration, log), core, self.args.duration)
        wall = time.monotonic() - start
        server1, edge1, busy1 = self.upstream.cpu_seconds(), self.edge.cpu_seconds(), busy_seconds()
        other = (busy1[None] - busy0[None]) - (server1 - server0) - (edge1 - edge0) - run.cpu_s
        ok1, failed1 = self.upstream.served()
        result = parse(run.output, log)
        served_ok, served_failed = ok1 - ok0, failed1 - failed0
        if served_ok < result.successes:
            raise BenchError(
                f"{scenario}: {result.tool} counted {result.successes} successes but the upstream answered only "
                f"{served_ok} GetItem calls with OK — the tool is counting failures as successes"
            )
        return report.Measurement(
            scenario=scenario,
            round=round_number,
            result=result,
            server_cpu=(server1 - server0) / wall,
            edge_cpu=(edge1 - edge0) / wall if through_edge else None,
            loadgen_core=core,
            loadgen_cpu=run.cpu_s / run.wall_s,
            other_cpu=max(0.0, other / wall),
            core_busy={
                core: (busy1[core] - busy0[core]) / wall for core in busy1 if core is not None and core in busy0
            },
            served_ok=served_ok,
            served_failed=served_failed,
        )

    def direct(self, concurrency: int, round_number: int) -> report.Measurement:
        """h2load straight at the upstream."""
        return self.measure(
            DIRECT,
            f"direct-c{concurrency}-r{round_number}",
            lambda seconds, log: h2load_argv(self.grpc_url, self.body, concurrency, seconds, log),
            lambda output, log: parse_h2load(output, log, concurrency, self.args.duration),
            through_edge=False,
            round_number=round_number,
        )

    def through_edge(self, concurrency: int, round_number: int) -> report.Measurement:
        """The wrk run at the REST edge in front of the same upstream."""
        return self.measure(
            EDGE,
            f"edge-c{concurrency}-r{round_number}",
            lambda seconds, _log: wrk_argv(self.rest_url, concurrency, seconds),
            lambda output, _log: parse_wrk(output, concurrency, self.args.duration),
            through_edge=True,
            round_number=round_number,
        )


def run(args: argparse.Namespace) -> int:
    """Set up, measure every scenario, print and save the results."""
    check_installed()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    host = report.machine()
    versions = tool_versions()
    print(f"machine: {host['nproc']} CPUs ({host['cpu_model']}), Linux {host['kernel']}, Python {host['python']}")
    print(f"tools:   {versions['h2load']}; {versions['wrk'].split(' Copyright')[0]}")
    print("stack:   " + ", ".join(f"{name} {version}" for name, version in host["packages"].items()))
    print(
        f"cores:   upstream on {args.server_core}, edge on {args.edge_core}, h2load on {args.h2load_core}, "
        f"wrk on {args.wrk_core}"
    )
    print(f"runs:    {args.rounds} round(s) of {args.warmup:g}s warm-up + {args.duration:g}s measured per scenario")
    measurements: list[report.Measurement] = []
    with (
        terminate_on_sigterm(),
        Upstream(args.server_core, out / "upstream.log") as upstream,
        Edge(args.edge_core, upstream.address, DESCRIPTOR_SET, out / "edge.log") as edge,
    ):
        bench = Bench(args, out, upstream, edge)
        checks = bench.verify()
        for concurrency in args.concurrencies:
            for round_number in range(1, args.rounds + 1):
                # alternate the order (ABBA) so a drifting machine does not favour one side
                order = (bench.direct, bench.through_edge) if round_number % 2 else (bench.through_edge, bench.direct)
                for measure in order:
                    measurement = measure(concurrency, round_number)
                    measurements.append(measurement)
                    print(
                        f"  {measurement.scenario:<20}  c={concurrency:<3} round {round_number}: "
                        f"{measurement.result.rps:>7,.0f} req/s  (upstream answered {measurement.served_ok} OK, "
                        f"{measurement.served_failed} failed; other processes {measurement.other_cpu:.0%} CPU)",
                        flush=True,
                    )

    pairs = [
        (report.best(measurements, DIRECT, concurrency), report.best(measurements, EDGE, concurrency))
        for concurrency in args.concurrencies
    ]
    chosen = [measurement for pair in pairs for measurement in pair]
    comparisons = [report.compare(direct, edge) for direct, edge in pairs]
    print()
    print(report.table(measurements, chosen))
    if args.rounds > 1:
        print("* the round compared below: the highest throughput of each scenario (least disturbed)")
    print()
    for measurement in chosen:
        where = measurement.diagnosis(args.server_core, args.edge_core)
        print(f"{measurement.scenario}, c={measurement.result.concurrency}: {where}")
    print()
    for comparison in comparisons:
        print(
            f"c={comparison.concurrency}: edge/direct throughput = {comparison.throughput_ratio:.2f}; "
            f"latency added by the edge: p50 {comparison.p50_added_ms:+.2f} ms, p99 {comparison.p99_added_ms:+.2f} ms"
        )
    goal = comparisons[0]
    met = goal.throughput_ratio >= report.GOAL_RATIO
    errors = sum(measurement.errors for measurement in measurements)
    noisy = [m for m in chosen if m.other_cpu > report.NOISY]
    print()
    print(
        f"edge/direct throughput = {goal.throughput_ratio:.2f} at concurrency {goal.concurrency} "
        f"(goal ≥ {report.GOAL_RATIO}×): " + ("goal met" if met else "GOAL MISSED")
    )
    print(f"latency added by the edge at p50 (c={goal.concurrency}): {goal.p50_added_ms:+.2f} ms")
    if errors:
        print(f"WARNING: {errors} failed requests in total — see the raw outputs")
    if noisy:
        print(
            f"WARNING: other processes competed for the CPUs during {len(noisy)} of the compared runs "
            f"(up to {max(m.other_cpu for m in noisy):.0%} of a core); rerun on a quiet machine for firm figures"
        )
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
                    "upstream": args.server_core,
                    "edge": args.edge_core,
                    "h2load": args.h2load_core,
                    "wrk": args.wrk_core,
                },
                "grpc_url": bench.grpc_url,
                "rest_url": bench.rest_url,
            },
            "verification": checks,
            "measurements": measurements,
            "compared": [{"direct_round": direct.round, "edge_round": edge.round} for direct, edge in pairs],
            "comparisons": comparisons,
            "goal": {"ratio": report.GOAL_RATIO, "concurrency": goal.concurrency, "met": met},
            "runs": bench.runs,
        },
    )
    print(f"raw outputs and summary.json in {out.relative_to(REPO)}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when the benchmark ran (goal met or not), 1 when something failed to run."""
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
