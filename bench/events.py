"""``make bench-events``: the event store on PostgreSQL next to PostgreSQL itself, measured in one run.

Issue #11's goals: appends of at least 5,000 events/s batched and at least half of the raw-PostgreSQL floor,
and a live subscription whose lag p99 stays under 50 ms at a steady 500 events/s. EventStoreDB is not
installable here, so the peer is the floor an event store on PostgreSQL cannot beat (``bench.events_floor``):
the same events with psycopg 3 ``INSERT … RETURNING`` into an equivalent table, and ``LISTEN``/``NOTIFY``
for the live path. The events service (``bench.events_target``) runs as real ``python -m runtime serve``
processes on the same PostgreSQL, driven through its gRPC ``AppendToStream`` with a service token and
``SubscribeToAll`` with an organisation admin's, both from identity. Both sides get the same load
(``bench.events_load``): the same payload (a typed ``agent.updated`` event of ``--payload-bytes``), the same
writers, the same batch size, the same pace.

Each scenario runs floor then service back to back (after an unmeasured warm-up of each), so drift on the
machine hits both alike; the events process's CPU per event is printed beside its figures, which is where
to look first when it misses a goal. A fresh schema prefix on the database holds everything and is dropped
afterwards. Results go to ``bench/results/<stamp>-events/summary.json``.

Exits 0 when the figures were taken (goals met or not: a miss prints ``GOAL MISSED``), 1 if something
failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from bench import events_profile as profile
from bench import report
from bench.events_floor import Floor
from bench.events_floor import appends as floor_appends
from bench.events_floor import live_lag as floor_live_lag
from bench.events_load import LagResult, Payload, RateResult
from bench.events_target import APPEND, EventsClient, EventsMesh, caller_of, closing
from bench.getagent import free_offset
from bench.processes import REPO, BenchError, cpu_seconds, terminate_on_sigterm
from mesh import event_types
from mesh.kit.ids import new_id
from mesh.registry import default_registry
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

RESULTS = REPO / "bench" / "results"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"

BATCHED_GOAL = 5_000.0
"""Events per second the batched appends should reach."""
FLOOR_GOAL = 0.5
"""Fraction of the raw-PostgreSQL floor's batched appends the service should keep."""
LAG_GOAL_MS = 50.0
"""The live subscription's p99 lag at the paced rate should stay under this."""

Result = TypeVar("Result", RateResult, LagResult)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured run (default 5)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of unmeasured load before each (default 1)")
    parser.add_argument("--writers", type=int, default=8, help="concurrent appenders, one stream each (default 8)")
    parser.add_argument("--batch", type=int, default=100, help="events per batched append (default 100)")
    parser.add_argument("--rate", type=float, default=500, help="events/s of the live-lag runs (default 500)")
    parser.add_argument("--payload-bytes", type=int, default=512, help="JSON size of each event's payload (512)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VOCELIO_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help=f"PostgreSQL to measure on (default $VOCELIO_BENCH_DATABASE_URL or {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs in the work directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the events process with py-spy during each service run (pip install py-spy into .venv)",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.writers < 1 or not 1 <= args.batch <= 500 or args.rate <= 0:
        parser.error("--duration and --rate positive, --warmup not negative, --writers ≥ 1, --batch 1 to 500")
    if args.payload_bytes < 100:
        parser.error("--payload-bytes: at least 100 (the payload's fixed fields take that much)")
    return args


def make_payload(organization: str, size: int) -> Payload:
    """A typed ``agent.updated`` payload whose JSON text is ``size`` bytes (the description pads it)."""

    def encoded(padding: int) -> event_types.EncodedEvent:
        agent = agent_pb2.Agent(
            name=f"organizations/{organization}/agents/{new_id('ag')}",
            organization_id=organization,
            display_name="Front desk",
            description="x" * padding,
        )
        return event_types.encode(agents_events_pb2.AgentUpdatedEvent(agent=agent, changed=["description"]))

    base = len(json.dumps(encoded(0).data, separators=(",", ":")).encode())
    event = encoded(max(0, size - base))
    data = dict(event.data)
    return Payload(
        type=event.type,
        data_schema=event.data_schema,
        data=data,
        json_text=json.dumps(data, separators=(",", ":")),
        organization_id=organization,
    )


@dataclasses.dataclass
class Scenario:
    """One measured figure of one side, with the CPU it cost."""

    side: str
    name: str
    result: RateResult | LagResult
    events_cpu_us_per_event: float | None = None
    bench_cpu: float = 0.0
    """CPU the bench process itself (the load generator) used, as a fraction of one core."""


class Bench:
    """Runs the scenarios, keeping every figure in ``scenarios`` and printing each as it comes."""

    def __init__(self, args: argparse.Namespace, mesh: EventsMesh, out: pathlib.Path) -> None:
        self.args = args
        self.mesh = mesh
        self.out = out
        self.scenarios: list[Scenario] = []

    async def measure(
        self, side: str, name: str, run: Callable[[], Awaitable[Result]], *, events: int | None = None
    ) -> Result:
        """Run ``run`` once, with the events process's and the bench's CPU around it; print and keep the figure.

        ``events`` (known after the run for rates: ``None`` takes the result's own count) divides the events
        process's CPU time into µs per event, on the service's side.
        """
        service_cpu0 = self.mesh.events_cpu() if side == "service" else 0.0
        sampling = (
            profile.Sampler(self.mesh.events_pid, self.out / f"profile-{name}.txt") if side == "service" else None
        )
        bench0, wall0 = cpu_seconds(os.getpid()), asyncio.get_running_loop().time()
        try:
            if sampling and self.args.profile:
                sampling.start()
            result = await run()
        finally:
            if sampling:
                sampling.stop()
        bench1, wall1 = cpu_seconds(os.getpid()), asyncio.get_running_loop().time()
        scenario = Scenario(side, name, result, bench_cpu=(bench1 - bench0) / max(wall1 - wall0, 1e-9))
        if side == "service":
            count = events if events is not None else result.events if isinstance(result, RateResult) else 0
            if count:
                scenario.events_cpu_us_per_event = (self.mesh.events_cpu() - service_cpu0) / count * 1e6
        self.scenarios.append(scenario)
        print("  " + line(scenario), flush=True)
        if sampling and sampling.samples:
            for text in profile.hottest(sampling.samples):
                print("      " + text)
        return result

    def figure(self, side: str, name: str) -> Any:
        """The result of one scenario."""
        return next(s.result for s in self.scenarios if s.side == side and s.name == name)


def line(scenario: Scenario) -> str:
    """One printed line per measured run."""
    result = scenario.result
    if isinstance(result, RateResult):
        text = (
            f"{scenario.side:<7} {scenario.name:<8} {result.events_per_s:9,.0f} events/s  "
            f"({result.requests:,} requests, p50 {result.p50_ms:6.2f} ms, p99 {result.p99_ms:6.2f} ms)"
        )
    else:
        text = (
            f"{scenario.side:<7} {scenario.name:<8} lag p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
            f"max {result.max_ms:6.1f} ms  ({result.received:,}/{result.expected:,} received at {result.rate:,.0f}/s)"
        )
    if scenario.events_cpu_us_per_event is not None:
        text += f"  events CPU {scenario.events_cpu_us_per_event:,.0f} µs/event"
    return text + f"  bench CPU {scenario.bench_cpu:.0%}"


async def measure_all(args: argparse.Namespace, bench: Bench, floor: Floor, client: EventsClient) -> None:
    """Single appends, batched appends and live lag: floor then service for each, each after a warm-up."""
    payload, writers, duration = client.payload, args.writers, args.duration
    for name, batch in (("single", 1), ("batched", args.batch)):
        print(f"{name} appends: {writers} writers, {batch} event(s) of {payload.size} bytes per request", flush=True)
        if args.warmup:
            await floor_appends(floor, payload, writers=writers, batch=batch, duration=args.warmup)
        await bench.measure(
            "floor",
            name,
            functools.partial(floor_appends, floor, payload, writers=writers, batch=batch, duration=duration),
        )
        if args.warmup:
            await client.appends(writers=writers, batch=batch, duration=args.warmup)
        await bench.measure(
            "service", name, functools.partial(client.appends, writers=writers, batch=batch, duration=duration)
        )
    print(f"live lag: {args.rate:g} single-event appends/s for {args.duration:g}s, one subscriber", flush=True)
    if args.warmup:
        await floor_live_lag(floor, payload, rate=args.rate, duration=args.warmup)
    await bench.measure(
        "floor", "lag", functools.partial(floor_live_lag, floor, payload, rate=args.rate, duration=duration)
    )
    events = round(args.rate * (args.duration + args.warmup))
    await bench.measure(
        "service",
        "lag",
        functools.partial(client.live_lag, rate=args.rate, duration=duration, warmup=args.warmup),
        events=events,
    )


def verdicts(bench: Bench) -> list[tuple[str, bool]]:
    """Each goal of the issue as a printed line, and whether it holds."""
    floor_single, service_single = bench.figure("floor", "single"), bench.figure("service", "single")
    floor_batched, service_batched = bench.figure("floor", "batched"), bench.figure("service", "batched")
    floor_lag, service_lag = bench.figure("floor", "lag"), bench.figure("service", "lag")
    ratio = service_batched.events_per_s / floor_batched.events_per_s if floor_batched.events_per_s else 0.0
    single_ratio = service_single.events_per_s / floor_single.events_per_s if floor_single.events_per_s else 0.0
    complete = service_lag.received == service_lag.expected
    lines = [
        (
            f"batched appends {service_batched.events_per_s:,.0f} events/s (goal ≥ {BATCHED_GOAL:,.0f})",
            service_batched.events_per_s >= BATCHED_GOAL,
        ),
        (
            f"batched appends {ratio:.2f}× the raw-PostgreSQL floor's {floor_batched.events_per_s:,.0f}/s "
            f"(goal ≥ {FLOOR_GOAL:g}×)",
            ratio >= FLOOR_GOAL,
        ),
        (
            f"live lag p99 {service_lag.p99_ms:.1f} ms at {service_lag.rate:,.0f} events/s, floor's "
            f"{floor_lag.p99_ms:.1f} ms (goal < {LAG_GOAL_MS:g} ms at {bench.args.rate:g}/s, every event delivered: "
            f"{service_lag.received:,}/{service_lag.expected:,})",
            service_lag.p99_ms < LAG_GOAL_MS and complete and service_lag.rate >= 0.95 * bench.args.rate,
        ),
    ]
    print(
        f"single appends {service_single.events_per_s:,.0f} events/s, {single_ratio:.2f}× the floor's "
        f"{floor_single.events_per_s:,.0f}/s (no goal: one commit per event on both sides)"
    )
    return lines


async def run(args: argparse.Namespace, work: pathlib.Path, prefix: str, out: pathlib.Path) -> Bench:
    """Start the services, measure everything, stop them; the figures."""
    registry = default_registry()
    appender = caller_of(registry, APPEND)
    floor = Floor(_libpq(args.database_url), f"{prefix}floor")
    mesh = EventsMesh(registry, work, database_url=args.database_url, schema_prefix=prefix, port_offset=free_offset())
    await floor.create()
    try:
        with closing(mesh):
            await mesh.start()
            organization, admin_token = await mesh.admin("bench@example.com", "bench password, long enough")
            payload = make_payload(organization, args.payload_bytes)
            client = EventsClient(
                mesh.address("events"), payload, append_token=await mesh.token(appender), subscribe_token=admin_token
            )
            print(
                f"events service at {mesh.address('events')}: appending as services/{appender}, subscribing as "
                f"the admin of organisation {organization}",
                flush=True,
            )
            bench = Bench(args, mesh, out)
            try:
                await measure_all(args, bench, floor, client)
            finally:
                await client.close()
            return bench
    finally:
        await floor.drop()


def drop_schemas(database_url: str, prefix: str) -> None:
    """Drop every schema the run created (the services' and the floor's)."""
    with psycopg.connect(_libpq(database_url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix.replace("_", r"\_") + "%",)
        ).fetchall()
        for (schema,) in rows:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _libpq(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the figures and the goals, save summary.json."""
    args = parse_args(argv)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-events-"))
    out = RESULTS / f"{stamp}-events"
    out.mkdir(parents=True, exist_ok=True)
    host = report.machine()
    print(f"machine: {host['nproc']} CPUs ({host['cpu_model']}), Linux {host['kernel']}, Python {host['python']}")
    try:
        with psycopg.connect(_libpq(args.database_url), connect_timeout=5) as connection:
            server = connection.execute("SHOW server_version").fetchone()
        print(f"postgres: {server[0] if server else '?'} at {args.database_url}, schema prefix {prefix}")
        with terminate_on_sigterm():
            bench = asyncio.run(run(args, work, prefix, out))
    except (BenchError, psycopg.Error) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        print(f"logs in {work}", file=sys.stderr)
        args.keep_logs = True
        return 1
    finally:
        try:
            drop_schemas(args.database_url, prefix)
        except psycopg.Error as error:
            print(f"could not drop the schemas {prefix}*: {error}", file=sys.stderr)
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("== summary ==")
    goals = verdicts(bench)
    for text, met in goals:
        print(f"{'met' if met else 'GOAL MISSED'}: {text}")
    report.save_summary(
        out / "summary.json",
        {
            "timestamp": stamp,
            "machine": host,
            "config": {
                key: getattr(args, key) for key in ("duration", "warmup", "writers", "batch", "rate", "payload_bytes")
            },
            "scenarios": bench.scenarios,
            "goals": [{"goal": text, "met": met} for text, met in goals],
        },
    )
    print(f"summary.json in {out.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
