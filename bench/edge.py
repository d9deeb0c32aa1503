"""The REST edge's throughput and latency next to direct gRPC for the same call.

One upstream (the conformance gRPC server, pinned to one core) is measured twice per concurrency:

* direct: h2load sends ``GetItem`` as raw gRPC over HTTP/2 to the upstream;
* edge: wrk sends ``GET /v1/shelves/s1/items/i1`` over HTTP/1.1 to the REST edge (pinned to the other
  core), which transcodes it to the same ``GetItem`` on the same upstream.

Both tools keep exactly ``concurrency`` requests in flight (h2load: that many connections, one stream each;
wrk: that many keep-alive connections). The upstream counts the calls it answered, so a tool's "success"
(any HTTP 200, whatever the grpc-status) is checked against calls that really succeeded.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import grpc

from bench import report
from bench.harness import Harness, Outcome, Patience
from bench.processes import REPO, BenchError, Edge, Upstream
from bench.tools import grpc_frame, h2load_argv, nghttp_grpc_status, parse_h2load, parse_wrk, wrk_argv
from conformance.v1 import conformance_pb2 as pb

ITEM = "shelves/s1/items/i1"
GRPC_PATH = "/conformance.v1.ConformanceService/GetItem"
REST_PATH = f"/v1/{ITEM}"
DESCRIPTOR_SET = REPO / "tests" / "gen" / "testing.binpb"
DIRECT = "direct gRPC (h2load)"
EDGE = "REST edge (wrk)"


class EdgeBench(Harness):
    """The edge benchmark: the upstream, the edge in front of it, the request."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: pathlib.Path,
        upstream: Upstream,
        edge: Edge,
        patience: Patience,
        runs: list[dict[str, Any]],
    ) -> None:
        super().__init__(args, out, [upstream, edge], patience, runs)
        self.upstream = upstream
        self.edge = edge
        self.body = out / "get_item.grpc"
        self.message = pb.GetItemRequest(name=ITEM).SerializeToString()
        self.body.write_bytes(grpc_frame(self.message))
        self.grpc_url = f"http://{upstream.address}{GRPC_PATH}"
        self.rest_url = f"http://{edge.address}{REST_PATH}"

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

    def direct(self, concurrency: int, round_number: int) -> report.Measurement:
        """h2load straight at the upstream."""
        return self.measure(
            DIRECT,
            f"direct-c{concurrency}-r{round_number}",
            lambda seconds, log: h2load_argv(self.grpc_url, self.body, concurrency, seconds, log),
            lambda output, log: parse_h2load(output, log, concurrency, self.args.duration),
            server=self.upstream,
            edge=None,
            core=self.args.h2load_core,
            round_number=round_number,
            call="GetItem",
        )

    def through_edge(self, concurrency: int, round_number: int) -> report.Measurement:
        """The wrk run at the REST edge in front of the same upstream."""
        return self.measure(
            EDGE,
            f"edge-c{concurrency}-r{round_number}",
            lambda seconds, _log: wrk_argv(self.rest_url, concurrency, seconds),
            lambda output, _log: parse_wrk(output, concurrency, self.args.duration),
            server=self.upstream,
            edge=self.edge,
            core=self.args.wrk_core,
            round_number=round_number,
            call="GetItem",
        )


def run(args: argparse.Namespace, out: pathlib.Path, patience: Patience, runs: list[dict[str, Any]]) -> Outcome:
    """Start the upstream and the edge, verify, measure every concurrency and round, print the section."""
    print()
    print("== REST edge next to direct gRPC: the same GetItem ==")
    measurements: list[report.Measurement] = []
    with (
        Upstream(args.server_core, out / "upstream.log") as upstream,
        Edge(args.edge_core, upstream.address, DESCRIPTOR_SET, out / "edge.log") as edge,
    ):
        bench = EdgeBench(args, out, upstream, edge, patience, runs)
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
    outcome = Outcome(
        name="edge",
        verification=checks,
        measurements=measurements,
        pairs=pairs,
        comparisons=[report.compare(direct, edge) for direct, edge in pairs],
        goal_ratio=report.GOAL_RATIO,
        config={"grpc_url": bench.grpc_url, "rest_url": bench.rest_url},
    )
    print()
    print(report.table(measurements, outcome.chosen))
    if args.rounds > 1:
        print("* the round compared below: the highest throughput of each scenario (least disturbed)")
    print()
    for measurement in outcome.chosen:
        where = measurement.diagnosis(args.server_core, args.edge_core)
        print(f"{measurement.scenario}, c={measurement.result.concurrency}: {where}")
    print()
    for comparison in outcome.comparisons:
        print(
            f"c={comparison.concurrency}: edge/direct throughput = {comparison.throughput_ratio:.2f}; "
            f"latency added by the edge: p50 {comparison.p50_added_ms:+.2f} ms, p99 {comparison.p99_added_ms:+.2f} ms"
        )
    goal = outcome.goal
    outcome.headline = [
        f"edge/direct throughput = {goal.throughput_ratio:.2f} at concurrency {goal.concurrency} "
        f"(goal ≥ {report.GOAL_RATIO}×): " + ("goal met" if outcome.met else "GOAL MISSED"),
        f"latency added by the edge at p50 (c={goal.concurrency}): {goal.p50_added_ms:+.2f} ms",
    ]
    return outcome
