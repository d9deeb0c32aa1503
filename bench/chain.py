"""The server chain's cost, what tracing + metrics + logs add to it, and the REST edge's workers, on one call.

A trivial unary method (``/benchmark.v1.BenchmarkService/GetPing``, ``tests/protos/benchmark/v1``, a read
with a real method policy: permission ``pings.get``, rate-limit class READ) is measured on these servers
(:data:`SCENARIOS`):

* (a) ``bare``: a plain grpc.aio server with the counting servicer, nothing else;
* (b) ``full``: the same servicer behind ``runtime.server.ServiceHost``, so the whole chain production
  composes runs (whatever wrappers ``ServiceHost`` has: none is listed here), with tracing exported over
  OTLP/HTTP to a local sink (``bench.otlp_sink``: a real exporter pipeline), metrics and per-RPC logs on,
  and the sampler left to Vocelio's production default (``parentbased_traceidratio`` at
  ``VOCELIO_TRACE_SAMPLE_RATIO``) — the goals are judged here;
* (b100) the same with every call sampled (``OTEL_TRACES_SAMPLER=parentbased_always_on``), for comparison;
* (b0) ``quiet``: the same as (b) with tracing, metrics and per-RPC logs switched off;
* (bt), (bm), (bl): (b0) with only tracing (default sampling), only metrics, only the RPC log line on, so
  the cost of telemetry is split by concern;
* (c) the REST edge with all its workers (``VOCELIO_EDGE_WORKERS`` unset: one per CPU), wrk at
  ``GET /v1/pings/p_bench``;
* (c1) the same edge with one worker (``VOCELIO_EDGE_WORKERS=1``), same upstream, same wrk.

The gRPC servers run side by side on the server core and h2load (on its own core) sends each the same
request with the same VIEWER token (the bare server ignores it). Whole-process figures drift by ±100 µs per
call from one run to the next (other work on the machine, the writer and exporter threads), more than one
concern costs, so every scenario runs ``--chain-rounds`` short rounds (``--chain-duration``), interleaved —
each round rotates the order and every other round reverses it — and the section compares **medians**:
throughput, and server CPU microseconds per call from the process's rusage divided by its own count. Each
traced server has its own OTLP sink, so the spans exported per call are counted per scenario. The goals:
(b) ≥ 0.8 × (a); tracing + metrics + logs cost at most 10% of (b)'s throughput, i.e. (b0 − b) / b ≤ 0.10;
(c) ≥ 1.5 × (c1).

Both edges front the bare server of (a) (pinned to the server core, wrk on the wrk core) and may run on every
core, so the only difference between (c) and (c1) is the number of workers. On a 2-core machine that upstream
is part of what limits (c): a Python grpc.aio server costs most of what an edge worker costs per call, and it
shares the two cores with the workers (a C upstream was not at hand; Node's grpc-js, tried, cost more CPU per
call than grpc.aio here). So the section also prints the ceiling the CPU puts on (c) — every core's time
divided by what one call costs the edge, the upstream and wrk together, as measured — and what (c)/(c1)
could reach at that ceiling, so a miss can be told apart: an edge that does not scale, or two cores that
cannot hold two edge workers and their upstream.

Whole-server figures cannot tell one wrapper's few µs apart; ``bench/chain_micro.py`` drives the same host's
composed wrappers in one process (no network) and prints what each one adds per call.

Every server counts the calls it answered with OK, and every load tool's successes are checked against that
count. The section runs at the first ``--concurrency`` only (the goals' one); with the defaults (5 rounds of
1 + 2 s) it takes about three minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

import grpc
from benchmark.v1 import benchmark_pb2 as pb

from bench import report
from bench.chain_upstream import DESCRIPTOR_SET, METHOD, PING, READY_PREFIX, REQUEST, RESPONSE
from bench.harness import Harness, Outcome, Patience
from bench.otlp_sink import READY_PREFIX as SINK_READY_PREFIX
from bench.processes import BenchError, CountingServer, Edge
from bench.tools import grpc_frame, h2load_argv, nghttp_grpc_status, parse_h2load, parse_wrk, wrk_argv
from tests.support.tokens import TestIssuer

# How the server process switches tracing, metrics and per-RPC logs: (concern, variable, on, off). The names
# are the ones issue #10's workstreams read (OTEL_* by the OpenTelemetry SDK itself); change them here only.
# ``{sink}`` becomes the OTLP sink's host:port.
TELEMETRY_SWITCHES: tuple[tuple[str, str, str, str], ...] = (
    ("tracing", "OTEL_SDK_DISABLED", "false", "true"),
    ("tracing", "OTEL_TRACES_EXPORTER", "otlp", "none"),
    ("tracing", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "http/protobuf"),
    ("tracing", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://{sink}", "http://{sink}"),
    ("metrics", "VOCELIO_METRICS", "on", "off"),
    ("logs", "VOCELIO_RPC_LOG", "on", "off"),
)
CONCERNS = ("tracing", "metrics", "logs")

ALWAYS_SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
"""What the 100 %-sampled scenario adds; every other tracing scenario leaves the sampler to Vocelio's default
(``mesh.telemetry.tracing``: ``parentbased_traceidratio`` at ``VOCELIO_TRACE_SAMPLE_RATIO``), the production
set-up the goals are judged at."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One gRPC server of the section: its key, label, mode, the concerns switched on and extra variables."""

    key: str
    label: str
    mode: str
    concerns: frozenset[str] = frozenset()
    extra: tuple[tuple[str, str], ...] = ()


BARE = "(a) bare grpc.aio"
FULL = "(b) full chain"
FULL_ALL = "(b100) full, 100% sampled"
QUIET = "(b0) chain, no telemetry"
TRACING_ONLY = "(bt) tracing only"
METRICS_ONLY = "(bm) metrics only"
LOGS_ONLY = "(bl) RPC log only"
EDGE_ALL = "(c) edge, all workers"
EDGE_ONE = "(c1) edge, 1 worker"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("bare", BARE, "bare"),
    Scenario("quiet", QUIET, "full"),
    Scenario("full", FULL, "full", frozenset(CONCERNS)),
    Scenario("full100", FULL_ALL, "full", frozenset(CONCERNS), tuple(ALWAYS_SAMPLED.items())),
    Scenario("tracing", TRACING_ONLY, "full", frozenset({"tracing"})),
    Scenario("metrics", METRICS_ONLY, "full", frozenset({"metrics"})),
    Scenario("logs", LOGS_ONLY, "full", frozenset({"logs"})),
)
"""The gRPC servers, measured in interleaved rounds: (b) is the production default (sampled at Vocelio's
default ratio), (b100) samples every call, (bt)/(bm)/(bl) switch on one concern each over (b0)."""

SERVER_SETTINGS = {
    # the limiter runs on every call, but never refuses the bench's one principal
    "VOCELIO_RATE_LIMIT_READ": "1000000:1000000",
    # the bench's token lives as long as a token may (15 minutes), and stopping waits for nothing
    "VOCELIO_ACCESS_TOKEN_TTL": "900",
    "VOCELIO_SHUTDOWN_DRAIN": "0",
    "VOCELIO_SHUTDOWN_GRACE": "1",
}
"""Settings both ServiceHost servers get (besides their own var directory)."""

ROLE = "VIEWER"
"""The token's role: the least one holding ``pings.get`` (``mesh.access``: VIEWER reads ``*.get``)."""
TOKEN_LIFETIME = 900
REST_PATH = f"/v1/{PING}"

CHAIN_GOAL = 0.8
"""(b) should keep at least this fraction of (a)'s throughput."""
TELEMETRY_GOAL = 0.10
"""Tracing + metrics + logs may cost at most this fraction of (b)'s throughput: (b0 − b) / b."""
EDGE_WORKERS_GOAL = 1.5
"""(c) should serve at least this many times (c1)'s throughput."""


def telemetry_environment(on: bool | frozenset[str], sink: str) -> dict[str, str]:
    """The switches of :data:`TELEMETRY_SWITCHES`: all on (``True``), all off, or the named concerns on."""
    concerns = frozenset(CONCERNS) if on is True else frozenset() if on is False else on
    return {
        variable: (value_on if concern in concerns else value_off).format(sink=sink)
        for concern, variable, value_on, value_off in TELEMETRY_SWITCHES
    }


class ChainServer(CountingServer):
    """A ``bench.chain_upstream`` server: ``bare``, or ``full`` with some telemetry concerns on."""

    def __init__(
        self, label: str, mode: str, core: int, jwks: pathlib.Path, log: pathlib.Path, env: dict[str, str]
    ) -> None:
        self.label = label
        argv = [sys.executable, "-m", "bench.chain_upstream", "--port", "0", "--mode", mode, "--jwks", str(jwks)]
        super().__init__(f"{label} chain bench server", core, argv, READY_PREFIX, log, env=env)


class OtlpSink(CountingServer):
    """``bench.otlp_sink``: its "OK" count is spans received."""

    def __init__(self, core: int, log: pathlib.Path) -> None:
        argv = [sys.executable, "-m", "bench.otlp_sink", "0"]
        super().__init__("OTLP sink", core, argv, SINK_READY_PREFIX, log)


def all_cores() -> str:
    """Every core this process may use, as a taskset list."""
    return ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))


def chain_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the section's own run length (``--chain-duration``, ``--chain-warmup``)."""
    chain_args = argparse.Namespace(**vars(args))
    chain_args.duration = args.chain_duration
    chain_args.warmup = args.chain_warmup
    return chain_args


def planned_token_seconds(args: argparse.Namespace) -> float:
    """Roughly how long the h2load part runs, which the one token must outlive."""
    per_run = args.chain_warmup + args.chain_duration + 3
    return float(len(SCENARIOS) * args.chain_rounds * per_run + args.settle + 60)


def round_order(items: list[Any], round_number: int) -> list[Any]:
    """Round ``round_number`` (from 1)'s order: rotated by one each round, reversed every other one.

    Every scenario runs early, late and next to each of the others once or more over a few rounds, so a
    machine whose load drifts (other helpers' tests) does not favour one side.
    """
    shift = (round_number - 1) % len(items)
    rotated = items[shift:] + items[:shift]
    return rotated if round_number % 2 else rotated[::-1]


def median_run(measurements: list[report.Measurement], scenario: str, concurrency: int) -> report.Measurement:
    """The median-throughput round of a scenario (the lower middle one for an even count)."""
    runs = sorted(
        (m for m in measurements if m.scenario == scenario and m.result.concurrency == concurrency),
        key=lambda m: m.result.rps,
    )
    return runs[(len(runs) - 1) // 2]


def median_us(measurements: list[report.Measurement], scenario: str, concurrency: int) -> float | None:
    """The median over the rounds of the server's CPU microseconds per call."""
    values = [
        m.server_us_per_call
        for m in measurements
        if m.scenario == scenario and m.result.concurrency == concurrency and m.server_us_per_call is not None
    ]
    return statistics.median(values) if values else None


def least_us(measurements: list[report.Measurement], scenario: str, concurrency: int) -> float | None:
    """The least server CPU microseconds per call of any round: other work on the machine only ever adds to it."""
    values = [
        m.server_us_per_call
        for m in measurements
        if m.scenario == scenario and m.result.concurrency == concurrency and m.server_us_per_call is not None
    ]
    return min(values) if values else None


def median_rps(measurements: list[report.Measurement], scenario: str, concurrency: int) -> float:
    """The median over the rounds of a scenario's throughput."""
    return statistics.median(
        m.result.rps for m in measurements if m.scenario == scenario and m.result.concurrency == concurrency
    )


class ChainBench(Harness):
    """The chain benchmark: the gRPC servers, their sinks, the two edges and their upstream, the requests."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: pathlib.Path,
        issuer: TestIssuer,
        servers: dict[str, ChainServer],
        sinks: dict[str, OtlpSink],
        edges: dict[str, Edge],
        patience: Patience,
        runs: list[dict[str, Any]],
    ) -> None:
        super().__init__(args, out, [*servers.values(), *sinks.values(), *edges.values()], patience, runs)
        self.issuer = issuer
        self.servers = servers
        self.sinks = sinks
        """One OTLP sink per traced server, so each one's spans are counted apart."""
        self.upstream = servers["bare"]
        """What both edges front: the bare server of (a)."""
        self.edges = edges
        self.token = issuer.mint(role=ROLE, lifetime=TOKEN_LIFETIME)
        self.headers = [f"authorization: Bearer {self.token}"]
        self.message = REQUEST.SerializeToString()
        self.body = out / "get_ping.grpc"
        self.body.write_bytes(grpc_frame(self.message))
        self.log_bytes: dict[str, list[float]] = {}
        """Log bytes per call answered, per scenario and run (warm-up included)."""

    def url(self, server: ChainServer) -> str:
        """Where h2load sends ``GetPing`` to ``server``."""
        return f"http://{server.address}{METHOD}"

    def _call(self, server: ChainServer, token: str | None) -> grpc.StatusCode:
        """One grpcio ``GetPing`` with the bench's body and ``token`` (or none): its status code."""
        metadata = () if token is None else (("authorization", f"Bearer {token}"),)
        with grpc.insecure_channel(server.address) as channel:
            get_ping = channel.unary_unary(
                METHOD, request_serializer=None, response_deserializer=pb.GetPingResponse.FromString
            )
            try:
                response = get_ping(self.message, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()
                return code
        if response != RESPONSE:
            raise BenchError(f"grpcio GetPing on the {server.label} server answered {response!r}")
        return grpc.StatusCode.OK

    def verify(self) -> dict[str, Any]:
        """Prove the chain servers authenticate and authorise, all answer the tools' exact requests, the edges too."""
        checks: dict[str, str] = {}
        guest = self.issuer.mint(role="GUEST")
        expected: list[tuple[ChainServer, str, str | None, grpc.StatusCode]] = [
            (self.servers["bare"], "no token", None, grpc.StatusCode.OK)
        ]
        chained = [scenario.key for scenario in SCENARIOS if scenario.mode == "full"]
        for name in chained:
            expected += [
                (self.servers[name], "no token", None, grpc.StatusCode.UNAUTHENTICATED),
                (self.servers[name], "a GUEST token (no pings.get)", guest, grpc.StatusCode.PERMISSION_DENIED),
                (self.servers[name], f"the bench's {ROLE} token", self.token, grpc.StatusCode.OK),
            ]
        before = {name: server.served() for name, server in self.servers.items()}
        for server, what, token, code in expected:
            got = self._call(server, token)
            if got is not code:
                raise BenchError(
                    f"grpcio GetPing with {what} on the {server.label} server: {got.name}, not {code.name}"
                )
            checks[f"grpcio {server.label} server, {what}"] = got.name
        for server in self.servers.values():
            status = nghttp_grpc_status(self.url(server), self.body, self.headers)
            if status != "0":
                raise BenchError(f"nghttp with h2load's exact request got grpc-status {status} from the {server.label}")
            checks[f"nghttp {server.label} server, h2load's request"] = f"grpc-status {status}"
        for name, server in self.servers.items():
            ok, failed = (after - earlier for after, earlier in zip(server.served(), before[name], strict=True))
            if ok != 2 or failed:
                raise BenchError(f"the {server.label} server counted {ok} OK / {failed} failed, expected 2 OK")
        for edge in self.edges.values():
            edge.wait_ready(REST_PATH)
        upstream_before = self.upstream.served()
        for name, edge in self.edges.items():
            body = json.loads(edge.get(REST_PATH))
            if body.get("ping", {}).get("name") != PING:
                raise BenchError(f"the {name} edge answered GET {REST_PATH} with {body!r}")
            checks[f"edge ({name}) GET {REST_PATH}"] = "200 " + json.dumps(body["ping"]["name"])
        ok, failed = (after - earlier for after, earlier in zip(self.upstream.served(), upstream_before, strict=True))
        if ok != len(self.edges) or failed:
            raise BenchError(f"the edges' upstream counted {ok} OK / {failed} failed for {len(self.edges)} calls")
        print(f"verified: {len(chained)} chain servers: no token → UNAUTHENTICATED, GUEST → PERMISSION_DENIED, ")
        print(f"          {ROLE} → OK (the constant GetPingResponse); bare: OK; nghttp with h2load's exact request →")
        print(f"          grpc-status 0 on all; each counted 2/2 OK; both edges GET {REST_PATH} → 200 {{ping}},")
        print(f"          their upstream (the bare server) counted {ok}/{ok} OK")
        return checks

    def grpc_run(self, name: str, scenario: str, concurrency: int, round_number: int) -> report.Measurement:
        """h2load at one of the gRPC servers, token included; the log bytes it caused are noted."""
        server = self.servers[name]
        url = self.url(server)
        size0, (ok0, _) = server.log.stat().st_size, server.served()
        measurement = self.measure(
            scenario,
            f"chain-{name}-c{concurrency}-r{round_number}",
            lambda seconds, log: h2load_argv(url, self.body, concurrency, seconds, log, self.headers),
            lambda output, log: parse_h2load(output, log, concurrency, self.args.duration),
            server=server,
            edge=None,
            core=self.args.h2load_core,
            round_number=round_number,
            call="GetPing",
        )
        size1, (ok1, _) = server.log.stat().st_size, server.served()
        if ok1 > ok0:
            self.log_bytes.setdefault(scenario, []).append((size1 - size0) / (ok1 - ok0))
        return measurement

    def edge_run(self, name: str, scenario: str, concurrency: int, round_number: int) -> report.Measurement:
        """The wrk run at one of the two edges."""
        url = f"http://{self.edges[name].address}{REST_PATH}"
        return self.measure(
            scenario,
            f"chain-edge-{name}-c{concurrency}-r{round_number}",
            lambda seconds, _log: wrk_argv(url, concurrency, seconds),
            lambda output, _log: parse_wrk(output, concurrency, self.args.duration),
            server=self.upstream,
            edge=self.edges[name],
            core=self.args.wrk_core,
            round_number=round_number,
            call="GetPing",
        )

    def spans_settled(self, limit: float = 8.0) -> dict[str, int]:
        """Spans each sink has received, once the batch exporters have sent what they still held.

        The counts are taken as settled when none has moved for two seconds (or ``limit`` passed).
        """
        spans, still = {key: sink.served()[0] for key, sink in self.sinks.items()}, 0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and still < 2:
            time.sleep(1.0)
            now = {key: sink.served()[0] for key, sink in self.sinks.items()}
            still = still + 1 if now == spans else 0
            spans = now
        return spans


def _line(measurement: report.Measurement, served_by: str) -> None:
    print(
        f"  {measurement.scenario:<26} c={measurement.result.concurrency:<3} round {measurement.round}: "
        f"{measurement.result.rps:>7,.0f} req/s, {_us(measurement.server_us_per_call):>5} µs/call "
        f"({served_by} answered {measurement.served_ok} OK, "
        f"{measurement.served_failed} failed; other processes {measurement.other_cpu:.0%} CPU)",
        flush=True,
    )


def _outcome(
    name: str,
    measurements: list[report.Measurement],
    baseline: str,
    variant: str,
    concurrency: int,
    goal_ratio: float,
    checks: dict[str, Any],
    config: dict[str, Any],
) -> Outcome:
    own = [m for m in measurements if m.scenario in (baseline, variant)]
    pair = (median_run(own, baseline, concurrency), median_run(own, variant, concurrency))
    comparison = report.compare(*pair)
    # the ratio of the medians, and the median CPU per call, rather than one round's
    comparison = dataclasses.replace(
        comparison,
        throughput_ratio=median_rps(own, variant, concurrency) / median_rps(own, baseline, concurrency),
        baseline_us_per_call=median_us(own, baseline, concurrency),
        us_per_call=median_us(own, variant, concurrency),
    )
    before, after = comparison.baseline_us_per_call, comparison.us_per_call
    comparison = dataclasses.replace(
        comparison, us_added_per_call=None if before is None or after is None else after - before
    )
    return Outcome(
        name=name,
        verification=checks,
        measurements=own,
        pairs=[pair],
        comparisons=[comparison],
        goal_ratio=goal_ratio,
        config=config,
    )


def _verdict(met: bool) -> str:
    return "goal met" if met else "GOAL MISSED"


def run(args: argparse.Namespace, out: pathlib.Path, patience: Patience, runs: list[dict[str, Any]]) -> list[Outcome]:
    """Start everything, verify, measure every scenario in interleaved rounds, print medians; three outcomes."""
    print()
    print(
        "== the server chain: bare grpc.aio, the full ServiceHost chain with each telemetry concern, "
        "and the edge's workers =="
    )
    if planned_token_seconds(args) > TOKEN_LIFETIME - 60:
        raise BenchError(
            f"the chain section's gRPC runs would take about {planned_token_seconds(args):.0f}s, longer than the "
            f"{TOKEN_LIFETIME}s its token may live: lower --chain-rounds, --chain-duration or --chain-warmup"
        )
    chain_args = chain_arguments(args)
    rounds = args.chain_rounds
    print(
        f"runs:    {rounds} interleaved round(s) of {chain_args.warmup:g}s warm-up + {chain_args.duration:g}s "
        "measured per scenario; medians reported"
    )
    concurrency = args.concurrencies[0]
    issuer = TestIssuer()
    jwks = out / "chain-jwks.json"
    jwks.write_text(json.dumps(issuer.jwks, indent=2) + "\n")
    measurements: list[report.Measurement] = []
    with contextlib.ExitStack() as stack:
        sinks = {
            scenario.key: stack.enter_context(OtlpSink(args.h2load_core, out / f"chain-otlp-sink-{scenario.key}.log"))
            for scenario in SCENARIOS
            if "tracing" in scenario.concerns
        }
        servers: dict[str, ChainServer] = {}
        for scenario in SCENARIOS:
            env = {**SERVER_SETTINGS, "VOCELIO_VAR_DIR": str(out / f"chain-{scenario.key}-var")}
            if scenario.mode == "full":
                sink = sinks[scenario.key].address if scenario.key in sinks else "127.0.0.1:9"
                env |= telemetry_environment(scenario.concerns, sink)
            env |= dict(scenario.extra)
            servers[scenario.key] = stack.enter_context(
                ChainServer(
                    scenario.label, scenario.mode, args.server_core, jwks, out / f"chain-{scenario.key}.log", env
                )
            )
        bare = servers["bare"]
        edge_all = stack.enter_context(
            Edge(all_cores(), bare.address, DESCRIPTOR_SET, out / "chain-edge-all.log", name="REST edge (all workers)")
        )
        edge_one = stack.enter_context(
            Edge(
                all_cores(),
                bare.address,
                DESCRIPTOR_SET,
                out / "chain-edge-one.log",
                env={"VOCELIO_EDGE_WORKERS": "1"},
                name="REST edge (1 worker)",
            )
        )
        edges = {"all workers": edge_all, "1 worker": edge_one}
        bench = ChainBench(chain_args, out, issuer, servers, sinks, edges, patience, runs)
        checks = bench.verify()
        workers = max(1, edge_all.processes() - 1)
        checks["edge processes (all workers)"] = edge_all.processes()
        checks["edge processes (1 worker)"] = edge_one.processes()
        print(
            f"          the all-workers edge runs {edge_all.processes()} process(es) ({workers} serving), "
            f"the 1-worker edge {edge_one.processes()}"
        )
        grpc_order = [(scenario.key, scenario.label) for scenario in SCENARIOS]
        for round_number in range(1, rounds + 1):
            for name, label in round_order(grpc_order, round_number):
                measurement = bench.grpc_run(name, label, concurrency, round_number)
                measurements.append(measurement)
                _line(measurement, "server")
        spans = bench.spans_settled()
        answered = {key: servers[key].served()[0] for key in sinks}
        edge_order = [("1 worker", EDGE_ONE), ("all workers", EDGE_ALL)]
        for round_number in range(1, rounds + 1):
            for name, label in round_order(edge_order, round_number):
                measurement = bench.edge_run(name, label, concurrency, round_number)
                measurements.append(measurement)
                _line(measurement, "bare upstream")
        log_bytes = {scenario: max(values) for scenario, values in bench.log_bytes.items()}

    config = {
        "method": METHOD,
        "rest_path": REST_PATH,
        "concurrency": concurrency,
        "rounds": rounds,
        "duration_s": chain_args.duration,
        "warmup_s": chain_args.warmup,
        "compared": "medians over the rounds",
        "scenarios": [
            {"key": s.key, "label": s.label, "mode": s.mode, "concerns": sorted(s.concerns), "extra": dict(s.extra)}
            for s in SCENARIOS
        ],
        "telemetry_switches": [list(switch) for switch in TELEMETRY_SWITCHES],
        "server_settings": SERVER_SETTINGS,
        "edge_workers": workers,
        "token": {"role": ROLE, "algorithm": "ES256", "bytes": len(bench.token)},
    }
    chain = _outcome("chain", measurements, BARE, FULL, concurrency, CHAIN_GOAL, checks, config)
    telemetry = _outcome("telemetry", measurements, QUIET, FULL, concurrency, 1 / (1 + TELEMETRY_GOAL), checks, config)
    edge_workers = _outcome(
        "edge_workers", measurements, EDGE_ONE, EDGE_ALL, concurrency, EDGE_WORKERS_GOAL, checks, config
    )
    spans_per_call = {key: spans[key] / answered[key] if answered[key] else 0.0 for key in sinks}
    telemetry.verification = {
        **checks,
        "spans_exported": spans,
        "server_ok_calls": answered,
        "spans_per_call": spans_per_call,
        "log_bytes_per_call": log_bytes,
    }

    labels = [scenario.label for scenario in SCENARIOS] + [EDGE_ONE, EDGE_ALL]
    chosen = [median_run(measurements, label, concurrency) for label in labels]
    print()
    print(report.table(measurements, chosen, server="server", edge=True, per_call=True))
    print("(server: the gRPC server under test; for the edge rows, the upstream behind the edge)")
    print("* the median round of each scenario")
    print()
    for measurement in chosen:
        where = measurement.diagnosis(args.server_core, args.edge_core, server="server")
        print(f"{measurement.scenario}, c={concurrency}: {where}")
    print()
    print(f"medians over {rounds} interleaved rounds, c={concurrency} (best: the least server CPU of any round):")
    heading = f"  {'scenario':<28} {'req/s':>7}  {'(min–max)':<15} {'µs/call':>7} {'best':>6}"
    print(f"{heading}  {'p50 ms':>6}  {'p99 ms':>6}")
    for label in labels:
        rates = [m.result.rps for m in measurements if m.scenario == label and m.result.concurrency == concurrency]
        middle = median_run(measurements, label, concurrency)
        spread = f"({min(rates):,.0f}–{max(rates):,.0f})"
        print(
            f"  {label:<28} {median_rps(measurements, label, concurrency):>7,.0f}  {spread:<15} "
            f"{_us(median_us(measurements, label, concurrency)):>7} "
            f"{_us(least_us(measurements, label, concurrency)):>6}  "
            f"{middle.result.p50_ms:>6.2f}  {middle.result.p99_ms:>6.2f}"
        )
    b0_rps, b0_us = median_rps(measurements, QUIET, concurrency), median_us(measurements, QUIET, concurrency)
    print(f"what telemetry costs over {QUIET} (medians; throughput cost = (b0 − x) / x, the goal's measure):")
    costs: dict[str, float] = {}
    for scenario in SCENARIOS:
        if scenario.mode != "full" or not scenario.concerns:
            continue
        rps, us = (
            median_rps(measurements, scenario.label, concurrency),
            median_us(measurements, scenario.label, concurrency),
        )
        costs[scenario.label] = cost = (b0_rps - rps) / rps if rps else 0.0
        added = "?" if us is None or b0_us is None else f"{us - b0_us:+,.0f}"
        least = least_us(measurements, scenario.label, concurrency)
        b0_least = least_us(measurements, QUIET, concurrency)
        added += "" if least is None or b0_least is None else f" (best {least - b0_least:+,.0f})"
        exported = (
            f"; {spans_per_call[scenario.key]:.2f} spans exported per call" if scenario.key in spans_per_call else ""
        )
        logged = f"; {log_bytes[scenario.label]:,.0f} log bytes per call" if scenario.label in log_bytes else ""
        print(f"  {scenario.label:<28} {cost:>6.1%} throughput, {added} µs server CPU per call{exported}{logged}")
    print()
    b, a = chain.pairs[0][1], chain.pairs[0][0]
    c1, c = edge_workers.pairs[0]
    cost = costs[FULL]
    rows = [
        ("(b)/(a) full chain / bare", chain.goal, f"goal ≥ {CHAIN_GOAL}", chain.met),
        (
            "(b)/(b0) with / without telemetry",
            telemetry.goal,
            f"cost (b0−b)/b = {cost:.1%}, goal ≤ {TELEMETRY_GOAL:.0%}",
            telemetry.met,
        ),
        (
            f"(c)/(c1) edge with {workers} worker(s) / with 1",
            edge_workers.goal,
            f"goal ≥ {EDGE_WORKERS_GOAL}",
            edge_workers.met,
        ),
    ]
    print("goals (at the production default sampling, (b); (b100) is shown for comparison only):")
    for label, comparison, goal, met in rows:
        print(
            f"{label}: throughput {comparison.throughput_ratio:.2f} ({goal}: {_verdict(met)}); "
            f"latency added p50 {comparison.p50_added_ms:+.2f} ms, p99 {comparison.p99_added_ms:+.2f} ms"
        )
    full_all_ratio = median_rps(measurements, FULL_ALL, concurrency) / median_rps(measurements, BARE, concurrency)
    print(f"{FULL_ALL}/(a): throughput {full_all_ratio:.2f}; telemetry cost at 100% sampling {costs[FULL_ALL]:.1%}")
    print(
        f"server CPU per call (medians): bare {_us(chain.goal.baseline_us_per_call)} µs, full "
        f"{_us(chain.goal.us_per_call)} µs, no telemetry {_us(b0_us)} µs; edge CPU per call: 1 worker "
        f"{_us(_edge_us(c1))} µs, {workers} worker(s) {_us(_edge_us(c))} µs"
    )
    cores = len(os.sched_getaffinity(0))
    ceiling = cpu_ceiling(c, cores)
    reach = ceiling / c1.result.rps if ceiling is not None and c1.result.rps else None
    if ceiling is not None:
        print(
            f"CPU ceiling of (c): {cores} cores / ({_us(_edge_us(c))} µs edge + {_us(c.server_us_per_call)} µs "
            f"upstream + {_us(_loadgen_us(c))} µs wrk per call) = {ceiling:,.0f} req/s, so (c)/(c1) could reach "
            f"at most {reach:.2f} here"
            + (" — below the goal: the cores, not the edge, decide it" if reach and reach < EDGE_WORKERS_GOAL else "")
        )
    edge_workers.verification = {**checks, "cpu_ceiling_rps": ceiling, "cpu_ceiling_ratio": reach}
    chain.headline = [
        f"full chain/bare throughput = {chain.goal.throughput_ratio:.2f} at concurrency {concurrency}, medians "
        f"({median_rps(measurements, BARE, concurrency):,.0f} → {median_rps(measurements, FULL, concurrency):,.0f} "
        f"req/s; p50 {a.result.p50_ms:.2f} → {b.result.p50_ms:.2f} ms, p99 {a.result.p99_ms:.2f} → "
        f"{b.result.p99_ms:.2f} ms; default sampling; goal ≥ {CHAIN_GOAL}×): {_verdict(chain.met)}"
    ]
    split = ", ".join(
        f"{label.split(' ', 1)[1]} {costs[label]:.1%}" for label in (TRACING_ONLY, METRICS_ONLY, LOGS_ONLY)
    )
    telemetry.headline = [
        f"tracing + metrics + logs cost = {cost:.1%} of the full chain's throughput at the default sampling "
        f"({b0_rps:,.0f} without → {median_rps(measurements, FULL, concurrency):,.0f} req/s with; "
        f"{spans_per_call['full']:.2f} spans exported per call; goal ≤ {TELEMETRY_GOAL:.0%}): "
        f"{_verdict(telemetry.met)}",
        f"  alone: {split}; at 100% sampling all three cost {costs[FULL_ALL]:.1%} "
        f"({spans_per_call['full100']:.2f} spans per call)",
    ]
    if not spans["full100"]:
        telemetry.headline.append(
            "WARNING: tracing was switched on but no span reached the OTLP sink: the full server had no tracing "
            "pipeline, so the cost above leaves tracing out (see bench/chain_upstream.start_process)"
        )
    edge_workers.headline = [
        f"edge {workers} worker(s)/1 worker throughput = {edge_workers.goal.throughput_ratio:.2f} "
        f"({median_rps(measurements, EDGE_ONE, concurrency):,.0f} → "
        f"{median_rps(measurements, EDGE_ALL, concurrency):,.0f} req/s; goal ≥ {EDGE_WORKERS_GOAL}×): "
        f"{_verdict(edge_workers.met)}" + ("" if reach is None else f"; the CPU ceiling allows at most {reach:.2f}×")
    ]
    return [chain, telemetry, edge_workers]


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _edge_us(measurement: report.Measurement) -> float | None:
    """Edge CPU microseconds per call the upstream answered."""
    if not measurement.served_ok or measurement.edge_cpu is None:
        return None
    return measurement.edge_cpu * measurement.wall_s / measurement.served_ok * 1e6


def _loadgen_us(measurement: report.Measurement) -> float | None:
    """Load generator CPU microseconds per call the server answered."""
    if not measurement.served_ok:
        return None
    return measurement.loadgen_cpu * measurement.wall_s / measurement.served_ok * 1e6


def cpu_ceiling(measurement: report.Measurement, cores: int) -> float | None:
    """Calls a second ``cores`` could serve at most, at what one call cost the server, the edge and the load tool."""
    parts = (measurement.server_us_per_call, _edge_us(measurement), _loadgen_us(measurement))
    if any(part is None for part in parts):
        return None
    total = sum(part for part in parts if part is not None)
    return cores * 1e6 / total if total else None
