"""The load tools (h2load for gRPC, wrk for HTTP/1.1): build the request, run them pinned, parse their output."""

from __future__ import annotations

import math
import pathlib
import re
import resource
import shutil
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.processes import BenchError, pinned

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
REQUIRED = {"h2load": "nghttp2-client", "nghttp": "nghttp2-client", "wrk": "wrk", "taskset": "util-linux"}


@dataclass(frozen=True)
class LoadResult:
    """What one measured run of a load tool reported (latencies in milliseconds).

    ``requests`` counts completed responses, ``successes`` those the tool deems good (HTTP 2xx — which for
    gRPC says nothing of the grpc-status, hence the server-side counter), ``errors`` failed requests of any kind.
    """

    tool: str
    concurrency: int
    duration_s: float
    requests: int
    successes: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float | None = None
    detail: dict[str, int] = field(default_factory=dict)


def check_installed(tools: Iterable[str] = REQUIRED) -> None:
    """Raise BenchError naming the Debian packages to install if one of ``tools`` (default: all) is missing."""
    missing = sorted({REQUIRED[tool] for tool in tools if shutil.which(tool) is None})
    if missing:
        raise BenchError(f"missing load tools; run: apt-get install -y {' '.join(missing)}")


def tool_versions() -> dict[str, str]:
    """One version line per load tool."""
    versions = {}
    for argv in (["h2load", "--version"], ["wrk", "-v"]):
        if shutil.which(argv[0]) is None:
            versions[argv[0]] = "not installed"
            continue
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        lines = (done.stdout + done.stderr).strip().splitlines()
        versions[argv[0]] = lines[0].strip() if lines else "unknown"
    return versions


def grpc_frame(message: bytes) -> bytes:
    """A length-prefixed gRPC message: flag 0 (uncompressed), uint32 big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _run(argv: list[str], timeout: float) -> tuple[str, float]:
    """Run a tool to completion: its stdout (stderr appended) and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            argv, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s: {' '.join(argv)}") from error
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = done.stdout + (f"\n[stderr]\n{done.stderr}" if done.stderr.strip() else "")
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {done.returncode}:\n{output[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return output, cpu


@dataclass(frozen=True)
class ToolRun:
    """A finished tool run: its raw output, wall time and CPU time."""

    argv: list[str]
    output: str
    wall_s: float
    cpu_s: float


def run_tool(argv: list[str], core: int | None, duration: float) -> ToolRun:
    """Run a load tool pinned to ``core`` (unpinned for ``None``); BenchError if it fails."""
    command = argv if core is None else pinned(core, argv)
    start = time.monotonic()
    output, cpu = _run(command, timeout=duration + 60)
    return ToolRun(command, output, time.monotonic() - start, cpu)


def h2load_argv(
    url: str,
    body: pathlib.Path,
    concurrency: int,
    duration: float,
    log: pathlib.Path | None,
    headers: Sequence[str] = (),
) -> list[str]:
    """h2load for unary gRPC: ``concurrency`` connections, one stream in flight on each (like wrk).

    ``headers`` (``"name: value"``) are sent on every request after the gRPC ones.
    """
    argv = ["h2load", "-t", "1", "-c", str(concurrency), "-m", "1", "-D", f"{duration:g}", "-d", str(body)]
    for header in (*GRPC_HEADERS, *headers):
        argv += ["-H", header]
    if log is not None:
        argv += ["--log-file", str(log)]
    return [*argv, url]


def wrk_argv(url: str, concurrency: int, duration: float, extra: Sequence[str] = ()) -> list[str]:
    """A wrk command line: one thread, ``concurrency`` keep-alive connections (one request in flight each).

    ``extra`` are more wrk options (``["-H", "Authorization: Bearer …"]``).
    """
    return ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{duration:g}s", "--latency", *extra, url]


def _search(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise BenchError(f"could not find {what} in the tool's output:\n{text[-2000:]}")
    return match


def percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise BenchError("no samples to compute a percentile from")
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_h2load(output: str, log: pathlib.Path, concurrency: int, duration: float) -> LoadResult:
    """Throughput and counts from h2load's summary; p50/p99 from its per-request ``--log-file``."""
    rps = float(_search(r"^finished in [\d.]+\w*, ([\d.]+) req/s", output, "h2load req/s").group(1))
    counts = _search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        output,
        "h2load request counts",
    )
    total, started, done, succeeded, failed, errored, timeout = (int(value) for value in counts.groups())
    codes = _search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output, "h2load status codes")
    mean = _search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", output, "h2load mean time")
    times = []
    for line in log.read_text().splitlines():
        columns = line.split("\t")
        if len(columns) >= 3 and columns[1] == "200":
            times.append(int(columns[2]) / 1000)
    times.sort()
    return LoadResult(
        tool="h2load",
        concurrency=concurrency,
        duration_s=duration,
        requests=done,
        successes=succeeded,
        errors=failed + max(0, done - succeeded - failed),
        rps=rps,
        p50_ms=percentile(times, 50),
        p99_ms=percentile(times, 99),
        mean_ms=to_ms(mean.group(1), mean.group(2)),
        detail={
            "total": total,
            "started": started,
            "failed": failed,
            "errored": errored,
            "timeout": timeout,
            **{f"http_{kind}": int(codes.group(index)) for index, kind in enumerate(("2xx", "3xx", "4xx", "5xx"), 1)},
            "log_samples": len(times),
        },
    )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(value: str, unit: str) -> float:
    """A duration as printed by wrk or h2load ("812.00us", "4.12ms", "1.02s"), in milliseconds."""
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str, concurrency: int, duration: float) -> LoadResult:
    """Throughput, p50/p99 (from ``--latency``), request and error counts from wrk's output."""

    def latency(percent: int) -> float:
        match = _search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, f"wrk {percent}% latency")
        return to_ms(match.group(1), match.group(2))

    rps = float(_search(r"^Requests/sec:\s+([\d.]+)", output, "wrk Requests/sec").group(1))
    requests = int(_search(r"^\s*(\d+) requests in ", output, "wrk request count").group(1))
    mean = _search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m|h)\s", output, "wrk mean latency")
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    connect, read, write, timeout = (int(value) for value in socket.groups()) if socket else (0, 0, 0, 0)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    bad_status = int(non_2xx.group(1)) if non_2xx else 0
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        duration_s=duration,
        requests=requests,
        successes=requests - bad_status,
        # read/write/connect errors are failed requests wrk does not count; a bad status is counted
        errors=bad_status + connect + read + write + timeout,
        rps=rps,
        p50_ms=latency(50),
        p99_ms=latency(99),
        mean_ms=to_ms(mean.group(1), mean.group(2)),
        detail={
            "non_2xx_3xx": bad_status,
            "socket_connect": connect,
            "socket_read": read,
            "socket_write": write,
            "socket_timeout": timeout,
        },
    )


def nghttp_grpc_status(url: str, body: pathlib.Path, headers: Sequence[str] = ()) -> str:
    """Send the exact h2load request (same body, same ``headers``) once with nghttp; the ``grpc-status`` it got."""
    argv = ["nghttp", "-v", "-d", str(body)]
    for header in (*GRPC_HEADERS, *headers):
        argv += ["-H", header]
    output, _ = _run([*argv, url], timeout=30)
    match = re.search(r"recv \(stream_id=\d+\) grpc-status: (\d+)", output)
    if match is None:
        raise BenchError(f"nghttp: no grpc-status trailer in the response:\n{output[-2000:]}")
    return match.group(1)
