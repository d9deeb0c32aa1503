"""What the bench prints and saves: the machine, the results tables, the ratios against each baseline."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.tools import LoadResult

GOAL_RATIO = 0.5
"""The edge should keep at least this fraction of direct gRPC's throughput."""

AUTH_GOAL_RATIO = 0.85
"""Authentication + RBAC should keep at least this fraction of the same call's throughput without them."""

SATURATED = 0.9
"""A core busier than this (fraction of one core) is taken as the bottleneck."""

NOISY = 0.15
"""Other processes using more than this (fraction of one core) during a run make its figures suspect."""

PACKAGES = ("grpcio", "protobuf", "starlette", "uvicorn", "uvloop", "httptools")


@dataclass(frozen=True)
class Measurement:
    """One measured run: the tool's figures, the CPU each process used, the server's own count.

    CPU figures are fractions of one core over the run (``wall_s`` long); ``other_cpu`` is what every process
    not ours used meanwhile (another workload competing for the cores); ``core_busy`` how busy each core was.
    """

    scenario: str
    round: int
    result: LoadResult
    server_cpu: float
    edge_cpu: float | None
    loadgen_core: int
    loadgen_cpu: float
    other_cpu: float
    core_busy: dict[int, float]
    served_ok: int
    served_failed: int
    wall_s: float

    @property
    def server_us_per_call(self) -> float | None:
        """Server CPU microseconds per call it answered: its CPU time over the run divided by its own count."""
        if not self.served_ok:
            return None
        return self.server_cpu * self.wall_s / self.served_ok * 1e6

    @property
    def errors(self) -> int:
        """Failed requests as seen by the tool or by the server, whichever saw more."""
        return max(self.result.errors, self.served_failed)

    def diagnosis(self, server_core: int, edge_core: int, server: str = "upstream") -> str:
        """Which core was saturated and by what (the server under load is called ``server``), and by whom else."""
        users: dict[int, list[str]] = {}
        for name, core, load in (
            (server, server_core, self.server_cpu),
            ("edge", edge_core, self.edge_cpu),
            ("load generator", self.loadgen_core, self.loadgen_cpu),
        ):
            if load is not None:
                users.setdefault(core, []).append(f"{name} {load:.0%}")
        saturated = [
            f"core {core} at {busy:.0%} ({', '.join(users.get(core, ['nothing of ours']))})"
            for core, busy in sorted(self.core_busy.items())
            if busy >= SATURATED
        ]
        if saturated:
            text = "saturated: " + "; ".join(saturated)
        else:
            text = "no core saturated (one request at a time crosses each hop in turn: latency-bound)"
        if self.other_cpu > NOISY:
            text += f"; other processes took {self.other_cpu:.0%} of a core meanwhile — figures disturbed"
        return text


def machine() -> dict[str, Any]:
    """CPU count and model, kernel, Python and the versions of the packages on the hot path."""
    model = "unknown"
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(
    measurements: list[Measurement],
    marked: list[Measurement],
    *,
    server: str = "upstream",
    edge: bool = True,
    per_call: bool = False,
) -> str:
    """The results as an aligned text table; the ``marked`` runs get a star after their round.

    ``server`` names the server column; ``edge`` keeps the edge's CPU column; ``per_call`` adds the server's
    CPU microseconds per call.
    """
    columns: list[tuple[str, Callable[[Measurement], str]]] = [
        ("scenario", lambda m: m.scenario),
        ("conc", lambda m: str(m.result.concurrency)),
        ("round", lambda m: str(m.round) + ("*" if m in marked else "")),
        ("req/s", lambda m: f"{m.result.rps:,.0f}"),
        ("p50 ms", lambda m: f"{m.result.p50_ms:.2f}"),
        ("p99 ms", lambda m: f"{m.result.p99_ms:.2f}"),
        ("errors", lambda m: str(m.errors)),
        (f"{server} CPU", lambda m: _cpu(m.server_cpu)),
    ]
    if per_call:
        columns.append((f"{server} µs/call", lambda m: _us(m.server_us_per_call)))
    if edge:
        columns.append(("edge CPU", lambda m: _cpu(m.edge_cpu)))
    columns += [
        ("loadgen CPU", lambda m: _cpu(m.loadgen_cpu)),
        ("other CPU", lambda m: _cpu(m.other_cpu)),
        ("cores busy", lambda m: " ".join(f"{load:.0%}" for _, load in sorted(m.core_busy.items()))),
    ]
    header = tuple(name for name, _ in columns)
    rows = [tuple(cell(m) for _, cell in columns) for m in measurements]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        return "  ".join(cells)

    return "\n".join([line(header), "  ".join("-" * width for width in widths), *(line(row) for row in rows)])


def best(measurements: list[Measurement], scenario: str, concurrency: int) -> Measurement:
    """The highest-throughput round of a scenario: the one least disturbed by anything else on the machine."""
    runs = [m for m in measurements if m.scenario == scenario and m.result.concurrency == concurrency]
    return max(runs, key=lambda m: m.result.rps)


def spread(measurements: list[Measurement], scenario: str, concurrency: int) -> float:
    """How far apart a scenario's rounds were: (highest - lowest) / highest throughput; 0 for a single round."""
    rates = [m.result.rps for m in measurements if m.scenario == scenario and m.result.concurrency == concurrency]
    highest = max(rates, default=0.0)
    return (highest - min(rates)) / highest if highest > 0 else 0.0


@dataclass(frozen=True)
class Comparison:
    """A variant of a call against its baseline at one concurrency.

    The edge against direct gRPC; the call with authentication + RBAC against the same call without. The
    ``*_us_per_call`` figures are the server's CPU microseconds per call it answered (``None`` if it answered
    none), ``us_added_per_call`` the difference.
    """

    concurrency: int
    throughput_ratio: float
    p50_added_ms: float
    p99_added_ms: float
    baseline_us_per_call: float | None = None
    us_per_call: float | None = None
    us_added_per_call: float | None = None


def compare(baseline: Measurement, variant: Measurement) -> Comparison:
    """Throughput ratio (variant / baseline), added latency and server CPU per call of a variant over its baseline."""
    before, after = baseline.server_us_per_call, variant.server_us_per_call
    return Comparison(
        concurrency=baseline.result.concurrency,
        throughput_ratio=variant.result.rps / baseline.result.rps if baseline.result.rps else 0.0,
        p50_added_ms=variant.result.p50_ms - baseline.result.p50_ms,
        p99_added_ms=variant.result.p99_ms - baseline.result.p99_ms,
        baseline_us_per_call=before,
        us_per_call=after,
        us_added_per_call=None if before is None or after is None else after - before,
    )


def save_summary(path: pathlib.Path, summary: dict[str, Any]) -> None:
    """Write the JSON summary (dataclasses become objects)."""

    def default(value: object) -> object:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, pathlib.Path):
            return str(value)
        raise TypeError(f"cannot serialise {type(value).__name__}")

    path.write_text(json.dumps(summary, indent=2, default=default) + "\n")
