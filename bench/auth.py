"""What authentication + RBAC cost per call: the same ``GetAgent`` with and without them.

Two ``bench.auth_upstream`` servers run side by side on the server core: ``full`` has the mesh's interceptor
chain (errors → authentication → authorization, with the real ``Authenticator``), ``bare`` only the errors
interceptor. Both answer the same constant response from the same handler. The bench mints one access token
(role VIEWER, which holds ``agents.get``, organisation ``org_a``) with a throw-away key only these servers
trust, and h2load sends it as ``authorization: Bearer …`` to both — the bare server ignores it, so the bytes
on the wire are identical and the only difference is the work the two interceptors do.

The verified token is cached by the ``Authenticator`` after its first call (tokens live for minutes and a
client reuses its token), so the steady state measured here is the per-call path of production: the cache
lookup, expiry and revocation checks, building the principal, and the permission check. The ES256 signature
is verified once per token, not per call.

Like the edge benchmark: h2load with ``concurrency`` connections of one stream each, pinned to its core; rounds
alternate which server goes first; the best round of each is compared; each server counts the calls it
answered with OK, so a call refused by the interceptors can never pass for a success.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import grpc

from bench import report
from bench.auth_upstream import AGENT, METHOD, READY_PREFIX, RESPONSE
from bench.harness import Harness, Outcome, Patience
from bench.processes import BenchError, CountingServer
from bench.tools import grpc_frame, h2load_argv, nghttp_grpc_status, parse_h2load
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agents_service_pb2 as pb

FULL = "auth + RBAC (h2load)"
BARE = "no auth (h2load)"
ROLE = "VIEWER"
"""The token's role: the least one holding ``agents.get``."""
ORGANIZATION = "org_a"


class AuthServer(CountingServer):
    """A ``bench.auth_upstream`` server: ``full`` (auth + RBAC) or ``bare`` (neither)."""

    def __init__(self, mode: str, core: int, jwks: pathlib.Path, log: pathlib.Path) -> None:
        self.mode = mode
        argv = [sys.executable, "-m", "bench.auth_upstream", "--port", "0", "--mode", mode, "--jwks", str(jwks)]
        super().__init__(f"{mode} auth bench server", core, argv, READY_PREFIX, log)


def token_lifetime(args: argparse.Namespace) -> int:
    """Seconds the bench's token must stay valid: the whole benchmark with room to spare, at least 15 minutes."""
    runs = len(args.concurrencies) * args.rounds * 2
    return int(max(900, runs * (args.warmup + args.duration + 5) + args.settle + 600))


class AuthBench(Harness):
    """The auth benchmark: both servers, the token, the request."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: pathlib.Path,
        issuer: TestIssuer,
        full: AuthServer,
        bare: AuthServer,
        patience: Patience,
        runs: list[dict[str, Any]],
    ) -> None:
        super().__init__(args, out, [full, bare], patience, runs)
        self.issuer = issuer
        self.full = full
        self.bare = bare
        self.token = issuer.mint(role=ROLE, org=ORGANIZATION, lifetime=token_lifetime(args))
        self.headers = [f"authorization: Bearer {self.token}"]
        self.message = pb.GetAgentRequest(name=AGENT).SerializeToString()
        self.body = out / "get_agent.grpc"
        self.body.write_bytes(grpc_frame(self.message))

    def url(self, server: AuthServer) -> str:
        """Where h2load sends ``GetAgent`` to ``server``."""
        return f"http://{server.address}{METHOD}"

    def _call(self, server: AuthServer, token: str | None) -> grpc.StatusCode:
        """One grpcio ``GetAgent`` with the bench's body and ``token`` (or none): its status code.

        An OK call must answer exactly the server's constant response.
        """
        metadata = () if token is None else (("authorization", f"Bearer {token}"),)
        with grpc.insecure_channel(server.address) as channel:
            get_agent = channel.unary_unary(
                METHOD, request_serializer=None, response_deserializer=pb.GetAgentResponse.FromString
            )
            try:
                response = get_agent(self.message, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()
                return code
        if response != RESPONSE:
            raise BenchError(f"grpcio GetAgent on the {server.mode} server answered {response!r}")
        return grpc.StatusCode.OK

    def verify(self) -> dict[str, Any]:
        """Prove the full server really authenticates and authorises, and both answer h2load's exact request."""
        full_before, bare_before = self.full.served(), self.bare.served()
        forged = TestIssuer().mint(role=ROLE, org=ORGANIZATION)
        guest = self.issuer.mint(role="GUEST", org=ORGANIZATION)
        expected = [
            (self.full, "no token", None, grpc.StatusCode.UNAUTHENTICATED),
            (self.full, "a token signed by another key", forged, grpc.StatusCode.UNAUTHENTICATED),
            (self.full, "a GUEST token (no agents.get)", guest, grpc.StatusCode.PERMISSION_DENIED),
            (self.full, f"the bench's {ROLE} token", self.token, grpc.StatusCode.OK),
            (self.bare, "no token", None, grpc.StatusCode.OK),
            (self.bare, f"the bench's {ROLE} token", self.token, grpc.StatusCode.OK),
        ]
        checks: dict[str, str] = {}
        for server, what, token, code in expected:
            got = self._call(server, token)
            if got is not code:
                raise BenchError(
                    f"grpcio GetAgent with {what} on the {server.mode} server: {got.name}, not {code.name}"
                )
            checks[f"grpcio {server.mode} server, {what}"] = got.name
        for server in (self.full, self.bare):
            status = nghttp_grpc_status(self.url(server), self.body, self.headers)
            if status != "0":
                raise BenchError(f"nghttp with h2load's exact request got grpc-status {status} from the {server.mode}")
            checks[f"nghttp {server.mode} server, h2load's request"] = f"grpc-status {status}"
        for server, before, calls in ((self.full, full_before, 2), (self.bare, bare_before, 3)):
            ok, failed = (after - earlier for after, earlier in zip(server.served(), before, strict=True))
            if ok != calls or failed:
                raise BenchError(f"the {server.mode} server counted {ok} OK / {failed} failed, expected {calls} OK")
        print("verified: full server (auth + RBAC): no token → UNAUTHENTICATED, forged → UNAUTHENTICATED,")
        print(f"          GUEST → PERMISSION_DENIED, {ROLE} → OK (the constant GetAgentResponse); bare server: OK with")
        print("          or without a token; nghttp with h2load's exact request → grpc-status 0 on both;")
        print("          the servers counted 2/2 and 3/3 OK calls")
        return checks

    def load(self, server: AuthServer, concurrency: int, round_number: int) -> report.Measurement:
        """h2load at one server, token included."""
        url = self.url(server)
        return self.measure(
            FULL if server is self.full else BARE,
            f"auth-{server.mode}-c{concurrency}-r{round_number}",
            lambda seconds, log: h2load_argv(url, self.body, concurrency, seconds, log, self.headers),
            lambda output, log: parse_h2load(output, log, concurrency, self.args.duration),
            server=server,
            edge=None,
            core=self.args.h2load_core,
            round_number=round_number,
            call="GetAgent",
        )


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _signed_us(value: float | None) -> str:
    return "?" if value is None else f"{value:+,.0f}"


def _ratio(comparison: report.Comparison) -> str:
    """The throughput ratio the CPU figures imply for a server that is the bottleneck: CPU without / CPU with."""
    if not comparison.us_per_call or comparison.baseline_us_per_call is None:
        return "?"
    return f"{comparison.baseline_us_per_call / comparison.us_per_call:.2f}"


def run(args: argparse.Namespace, out: pathlib.Path, patience: Patience, runs: list[dict[str, Any]]) -> Outcome:
    """Start both servers, verify, measure every concurrency and round, print the section."""
    print()
    print("== authentication + RBAC: the same GetAgent with and without them ==")
    issuer = TestIssuer()
    jwks = out / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks, indent=2) + "\n")
    measurements: list[report.Measurement] = []
    with (
        AuthServer("full", args.server_core, jwks, out / "auth-full.log") as full,
        AuthServer("bare", args.server_core, jwks, out / "auth-bare.log") as bare,
    ):
        bench = AuthBench(args, out, issuer, full, bare, patience, runs)
        checks = bench.verify()
        for concurrency in args.concurrencies:
            for round_number in range(1, args.rounds + 1):
                # alternate the order (ABBA) so a drifting machine does not favour one side
                for server in (full, bare) if round_number % 2 else (bare, full):
                    measurement = bench.load(server, concurrency, round_number)
                    measurements.append(measurement)
                    print(
                        f"  {measurement.scenario:<20}  c={concurrency:<3} round {round_number}: "
                        f"{measurement.result.rps:>7,.0f} req/s  (server answered {measurement.served_ok} OK, "
                        f"{measurement.served_failed} failed; other processes {measurement.other_cpu:.0%} CPU)",
                        flush=True,
                    )

    pairs = [
        (report.best(measurements, BARE, concurrency), report.best(measurements, FULL, concurrency))
        for concurrency in args.concurrencies
    ]
    outcome = Outcome(
        name="auth",
        verification=checks,
        measurements=measurements,
        pairs=pairs,
        comparisons=[report.compare(bare_run, full_run) for bare_run, full_run in pairs],
        goal_ratio=report.AUTH_GOAL_RATIO,
        config={
            "method": METHOD,
            "full_url": bench.url(bench.full),
            "bare_url": bench.url(bench.bare),
            "token": {"role": ROLE, "organization": ORGANIZATION, "algorithm": "ES256", "bytes": len(bench.token)},
            "jwks": jwks,
        },
    )
    print()
    print(report.table(measurements, outcome.chosen, server="server", edge=False, per_call=True))
    if args.rounds > 1:
        print("* the round compared below: the highest throughput of each scenario (least disturbed)")
    print()
    for measurement in outcome.chosen:
        name = "full server" if measurement.scenario == FULL else "bare server"
        where = measurement.diagnosis(args.server_core, args.edge_core, server=name)
        print(f"{measurement.scenario}, c={measurement.result.concurrency}: {where}")
    print()
    for comparison in outcome.comparisons:
        concurrency = comparison.concurrency
        spread = max(report.spread(measurements, scenario, concurrency) for scenario in (BARE, FULL))
        print(
            f"c={concurrency}: auth+RBAC/none throughput = {comparison.throughput_ratio:.2f}"
            + (f" (rounds of one server differed by up to {spread:.0%})" if args.rounds > 1 else "")
            + f"; latency added: p50 {comparison.p50_added_ms:+.2f} ms, p99 {comparison.p99_added_ms:+.2f} ms"
        )
        print(
            f"     server CPU per call: {_us(comparison.baseline_us_per_call)} µs without → "
            f"{_us(comparison.us_per_call)} µs with ({_signed_us(comparison.us_added_per_call)} µs); "
            f"a CPU-bound server would keep {_ratio(comparison)} of its throughput"
        )
    goal = outcome.goal
    outcome.headline = [
        f"auth+RBAC/none throughput = {goal.throughput_ratio:.2f} at concurrency {goal.concurrency} "
        f"(goal ≥ {report.AUTH_GOAL_RATIO}×, at most {1 - report.AUTH_GOAL_RATIO:.0%} lost): "
        + ("goal met" if outcome.met else "GOAL MISSED"),
        f"server CPU added per call by auth + RBAC (c={goal.concurrency}): {_signed_us(goal.us_added_per_call)} µs "
        f"({_us(goal.baseline_us_per_call)} → {_us(goal.us_per_call)} µs per call; "
        f"a CPU-bound server would keep {_ratio(goal)} of its throughput)",
    ]
    return outcome
