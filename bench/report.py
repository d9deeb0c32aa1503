"""What the bench prints and saves: the machine, the results table, the edge/direct ratios."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
from dataclasses import dataclass
from typing import Any

from bench.tools import LoadResult

GOAL_RATIO = 0.5
"""The edge should keep at least this fraction of direct gRPC's throughput."""

SATURATED = 0.9
"""A core busier than this (fraction of one core) is taken as the bottleneck."""

NOISY = 0.15
"""Other processes using more than this (fraction of one core) during a run make its figures suspect."""

PACKAGES = ("grpcio", "protobuf", "starlette", "uvicorn", "uvloop", "httptools")


@dataclass(frozen=True)
class Measurement:
    """One measured run: the tool's figures, the CPU each process used, the server's own count.

    CPU figures are fractions of one core over the run; ``other_cpu`` is what every other process on the
    machine used meanwhile (another workload competing for the two cores); ``core_busy`` how busy each core was.
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

    @property
    def errors(self) -> int:
        """Failed requests as seen by the tool or by the server, whichever saw more."""
        return max(self.result.errors, self.served_failed)

    def diagnosis(self, server_core: int, edge_core: int) -> str:
        """Which core was saturated and by what, and whether other processes competed."""
        users: dict[int, list[str]] = {}
        for name, core, load in (
            ("upstream", server_core, self.server_cpu),
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


def table(measurements: list[Measurement], marked: list[Measurement]) -> str:
    """The results as an aligned text table; the ``marked`` runs get a star after their round."""
    header = (
        "scenario",
        "conc",
        "round",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "upstream CPU",
        "edge CPU",
        "loadgen CPU",
        "other CPU",
        "cores busy",
    )
    rows = [
        (
            m.scenario,
            str(m.result.concurrency),
            str(m.round) + ("*" if m in marked else ""),
            f"{m.result.rps:,.0f}",
            f"{m.result.p50_ms:.2f}",
            f"{m.result.p99_ms:.2f}",
            str(m.errors),
            _cpu(m.server_cpu),
            _cpu(m.edge_cpu),
            _cpu(m.loadgen_cpu),
            _cpu(m.other_cpu),
            " ".join(f"{load:.0%}" for _, load in sorted(m.core_busy.items())),
        )
        for m in measurements
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        return "  ".join(cells)

    return "\n".join([line(header), "  ".join("-" * width for width in widths), *(line(row) for row in rows)])


def best(measurements: list[Measurement], scenario: str, concurrency: int) -> Measurement:
    """The highest-throughput round of a scenario: the one least disturbed by anything else on the machine."""
    runs = [m for m in measurements if m.scenario == scenario and m.result.concurrency == concurrency]
    return max(runs, key=lambda m: m.result.rps)


@dataclass(frozen=True)
class Comparison:
    """The edge against direct gRPC at one concurrency."""

    concurrency: int
    throughput_ratio: float
    p50_added_ms: float
    p99_added_ms: float


def compare(direct: Measurement, edge: Measurement) -> Comparison:
    """Throughput ratio and added latency of the edge over direct gRPC."""
    return Comparison(
        concurrency=direct.result.concurrency,
        throughput_ratio=edge.result.rps / direct.result.rps if direct.result.rps else 0.0,
        p50_added_ms=edge.result.p50_ms - direct.result.p50_ms,
        p99_added_ms=edge.result.p99_ms - direct.result.p99_ms,
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
