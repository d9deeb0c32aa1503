"""What every benchmark of ``make bench`` does around a load-tool run.

Wait for the CPUs to quieten, warm up, then one measured run with the CPU time of every process and the
server's own count of OK calls around it — so a tool's "success" (any HTTP 200, whatever the grpc-status) is
checked against calls that really succeeded.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import report
from bench.processes import BenchError, Child, CountingServer, busy_seconds
from bench.tools import LoadResult, ToolRun, run_tool


class Patience:
    """Seconds left, over the whole ``make bench``, to wait for other processes to leave the CPUs alone."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


@dataclass
class Outcome:
    """What one benchmark found: its checks, every run, the rounds compared and the ratios.

    ``pairs`` are (baseline, variant) per concurrency, the first being the one the goal applies to;
    ``comparisons`` the matching ratios; ``headline`` the lines the final summary prints for it.
    """

    name: str
    verification: dict[str, Any]
    measurements: list[report.Measurement]
    pairs: list[tuple[report.Measurement, report.Measurement]]
    comparisons: list[report.Comparison]
    goal_ratio: float
    config: dict[str, Any] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)

    @property
    def goal(self) -> report.Comparison:
        """The comparison the goal applies to (the first concurrency)."""
        return self.comparisons[0]

    @property
    def met(self) -> bool:
        """Whether the variant kept at least ``goal_ratio`` of its baseline's throughput."""
        return self.goal.throughput_ratio >= self.goal_ratio

    @property
    def chosen(self) -> list[report.Measurement]:
        """The runs compared (the best round of each scenario and concurrency)."""
        return [measurement for pair in self.pairs for measurement in pair]

    def warnings(self, what: str) -> list[str]:
        """Failed requests and competing processes during the compared runs, as lines to print."""
        lines = []
        errors = sum(measurement.errors for measurement in self.measurements)
        noisy = [m for m in self.chosen if m.other_cpu > report.NOISY]
        if errors:
            lines.append(f"WARNING: {what}: {errors} failed requests in total — see the raw outputs")
        if noisy:
            lines.append(
                f"WARNING: {what}: other processes competed for the CPUs during {len(noisy)} of the compared runs "
                f"(up to {max(m.other_cpu for m in noisy):.0%} of a core); rerun on a quiet machine for firm figures"
            )
        return lines

    def summary(self) -> dict[str, Any]:
        """The part of summary.json about this benchmark."""
        return {
            "config": self.config,
            "verification": self.verification,
            "measurements": self.measurements,
            "compared": [{"baseline_round": base.round, "variant_round": var.round} for base, var in self.pairs],
            "comparisons": self.comparisons,
            "goal": {"ratio": self.goal_ratio, "concurrency": self.goal.concurrency, "met": self.met},
        }


class Harness:
    """Runs load tools against counting servers, accounting for the CPU of ``processes`` (all of ours)."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: pathlib.Path,
        processes: Sequence[Child],
        patience: Patience,
        runs: list[dict[str, Any]],
    ) -> None:
        self.args = args
        self.out = out
        self.processes = list(processes)
        self.patience = patience
        self.runs = runs
        """Every tool run of the whole bench (label, argv, wall and CPU seconds), for summary.json."""

    def ours(self) -> float:
        """CPU seconds all our long-running processes have used so far."""
        return sum(process.cpu_seconds() for process in self.processes)

    def settle(self) -> None:
        """Wait (within the remaining patience) until other processes use less than a little of the CPUs."""
        start = time.monotonic()
        while self.patience.seconds > 0:
            before, ours_before = busy_seconds()[None], self.ours()
            time.sleep(0.5)
            after, ours_after = busy_seconds()[None], self.ours()
            self.patience.seconds -= 0.5
            other = ((after - before) - (ours_after - ours_before)) / 0.5
            if other <= report.NOISY:
                break
        waited = time.monotonic() - start
        if waited > 1:
            print(f"  (waited {waited:.0f}s for other processes to leave the CPUs)", flush=True)

    def run_tool(self, label: str, argv: list[str], core: int, duration: float) -> ToolRun:
        """Run a load tool pinned to ``core``, keeping its output in ``label``.txt."""
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
        server: CountingServer,
        edge: Child | None,
        core: int,
        round_number: int,
        call: str,
    ) -> report.Measurement:
        """Warm up, then one measured run with the CPU of every process and ``server``'s count around it.

        ``edge`` is the process in front of ``server`` on this path, if any; ``core`` the load tool's;
        ``call`` names the call ``server`` counts, for messages.
        """
        self.settle()
        self.run_tool(f"{label}.warmup", argv(self.args.warmup, None), core, self.args.warmup)
        log = self.out / f"{label}.requests.tsv"
        ok0, failed0 = server.served()
        server0, edge0 = server.cpu_seconds(), edge.cpu_seconds() if edge else 0.0
        ours0, busy0 = self.ours(), busy_seconds()
        start = time.monotonic()
        run = self.run_tool(label, argv(self.args.duration, log), core, self.args.duration)
        wall = time.monotonic() - start
        server1, edge1 = server.cpu_seconds(), edge.cpu_seconds() if edge else 0.0
        ours1, busy1 = self.ours(), busy_seconds()
        other = (busy1[None] - busy0[None]) - (ours1 - ours0) - run.cpu_s
        ok1, failed1 = server.served()
        result = parse(run.output, log)
        served_ok, served_failed = ok1 - ok0, failed1 - failed0
        if served_ok < result.successes:
            raise BenchError(
                f"{scenario}: {result.tool} counted {result.successes} successes but the server answered only "
                f"{served_ok} {call} calls with OK — the tool is counting failures as successes"
            )
        return report.Measurement(
            scenario=scenario,
            round=round_number,
            result=result,
            server_cpu=(server1 - server0) / wall,
            edge_cpu=(edge1 - edge0) / wall if edge else None,
            loadgen_core=core,
            loadgen_cpu=run.cpu_s / run.wall_s,
            other_cpu=max(0.0, other / wall),
            core_busy={
                core: (busy1[core] - busy0[core]) / wall for core in busy1 if core is not None and core in busy0
            },
            served_ok=served_ok,
            served_failed=served_failed,
            wall_s=wall,
        )
