"""``make bench-getagent``: GET /v1/agents/{id} through Vocelio's REST edge against the original design.

Both systems run side by side on this machine, unpinned, and are measured alternating in one run (A, B, A,
B …) with the same load: ``wrk -t1 -c16 --latency``, a 2 s warm-up before every measured run.

* Vocelio: the mesh exactly as ``make run`` starts it (``python -m runtime run``: one process per service
  and one for the edge, SQLite under a fresh var directory, ports at a free offset). The bench signs up an
  organisation, logs in (password grant, an ES256 access token) and creates an agent through the edge; the
  measured request is the real path: edge → agents, with authentication, RBAC, tenancy and a database read.
* The original design (``../shared/peer/original_design``, see its README): its FastAPI gateway and agents
  service started the way its ``bench.sh`` starts them, seeded with its ``seed.py``.

Printed: req/s, p50 and p99 of every run, the median of each side, the ratio of the medians, and the CPU
time the agents process spent per GetAgent (utime + stime from /proc over the measured run ÷ requests).
Exits 1 if the ratio is below ``--min-ratio`` (3) or the CPU per request above ``--max-cpu-ms`` (0.8),
unless ``--no-check``; exits 2 if something failed to run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from bench.processes import REPO, BenchError, Child, cpu_seconds, free_port, terminate_on_sigterm
from bench.tools import LoadResult, check_installed, parse_wrk, run_tool, wrk_argv

_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
PEER_VENV = pathlib.Path(os.environ.get("VENV", _CACHE / "seedbench-venv"))  # the venv bench.sh uses
PEER_IMPORTS = "import fastapi, uvicorn, httpx, sniffio, sqlalchemy, aiosqlite, jwt"
CONCURRENCY = 16
PASSWORD = "bench password, long enough"


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured wrk run of one side."""

    side: str
    result: LoadResult
    agents_cpu_s: float | None = None

    @property
    def cpu_ms_per_request(self) -> float | None:
        """The agents process's CPU per request, in milliseconds (Vocelio's side only)."""
        if self.agents_cpu_s is None or not self.result.requests:
            return None
        return 1000 * self.agents_cpu_s / self.result.requests


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.getagent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per side, alternating (default 3)")
    parser.add_argument("--min-ratio", type=float, default=3.0, help="goal: Vocelio ÷ original (default 3)")
    parser.add_argument("--max-cpu-ms", type=float, default=0.8, help="goal: agents CPU ms per GetAgent (0.8)")
    parser.add_argument("--no-check", action="store_true", help="only print the figures; exit 0 if they were taken")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with the servers' logs")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --duration positive, --warmup not negative")
    return args


def peer_dir() -> pathlib.Path:
    """The original design's directory: ``$VOCELIO_PEER_DIR``, else ``shared/peer/original_design`` beside the repo.

    From a git worktree the repository sits deeper, so every parent directory is tried.
    """
    if os.environ.get("VOCELIO_PEER_DIR"):
        return pathlib.Path(os.environ["VOCELIO_PEER_DIR"])
    for parent in REPO.parents:
        candidate = parent / "shared" / "peer" / "original_design"
        if (candidate / "gateway.py").exists():
            return candidate
    raise BenchError("the original design is not at ../shared/peer/original_design; set VOCELIO_PEER_DIR")


# HTTP helpers


def request(method: str, url: str, body: dict[str, Any] | None = None, token: str = "") -> tuple[int, Any]:
    """One JSON request: (status, parsed body)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read()[:300]


def wait_for(url: str, child: Child, timeout: float) -> None:
    """Poll ``GET url`` until it answers 200; BenchError if it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        with contextlib.suppress(OSError):
            if request("GET", url)[0] == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer 200 within {timeout:.0f}s (see {child.log})")


def settled(send: Callable[[], tuple[int, Any]], patience: float = 30) -> tuple[int, Any]:
    """``send()`` again while it answers 401 or 503, for up to ``patience`` seconds.

    Right after start-up a service may not have identity's key set yet (its first fetch
    raced identity's start and waits out a cool-down), so a fresh token is refused briefly.
    """
    deadline = time.monotonic() + patience
    while True:
        status, body = send()
        if status not in (401, 503) or time.monotonic() > deadline:
            return status, body
        time.sleep(1)


def expect(status: int, body: Any, wanted: int, what: str) -> Any:
    """``body`` if ``status`` is ``wanted``; BenchError otherwise."""
    if status != wanted:
        raise BenchError(f"{what}: HTTP {status}, expected {wanted}: {body!r}")
    return body


# The two systems


@dataclasses.dataclass
class Target:
    """A URL to load, with its token, and how to read the agents process's CPU time (Vocelio only)."""

    side: str
    url: str
    token: str
    agents_cpu: Callable[[], float] | None = None


def free_offset() -> int:
    """A port offset whose mesh ports (8000 … 8030 shifted) are all free now."""
    for _ in range(50):
        offset = 100 * (1 + int.from_bytes(os.urandom(2), "big") % 400)
        if all(_port_free(8000 + offset + port) for port in range(31)):
            return offset
    raise BenchError("no free port range for the mesh")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _child_pid(parent: int, marker: str) -> int | None:
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent and marker.encode() in cmdline:
            return int(entry.name)
    return None


@contextlib.contextmanager
def vocelio(work: pathlib.Path) -> Iterator[Target]:
    """The mesh as ``make run`` starts it, seeded with one organisation, its admin and one agent."""
    offset = free_offset()
    env = {
        "VOCELIO_PORT_OFFSET": str(offset),
        "VOCELIO_VAR_DIR": str(work / "var"),
        "VOCELIO_LOG_LEVEL": "WARNING",
        "VOCELIO_SHUTDOWN_DRAIN": "0",
        # One principal drives the whole load: its READ bucket (200/s by default) must not be what is measured.
        "VOCELIO_RATE_LIMIT_READ": "1000000:1000000",
    }
    with Child("vocelio mesh", [sys.executable, "-m", "runtime", "run"], work / "vocelio-mesh.log", env=env) as mesh:
        base = f"http://127.0.0.1:{8000 + offset}"
        wait_for(f"{base}/health", mesh, timeout=120)
        agents_pid = _child_pid(mesh.pid, "agents")
        if agents_pid is None:
            raise BenchError("the supervisor has no agents process")
        signup = {
            "email": "bench@example.com",
            "password": PASSWORD,
            "displayName": "bench",
            "termsAccepted": True,
            "organizationDisplayName": "Bench",
        }
        organization = expect(*request("POST", f"{base}/v1/auth/signup", signup), 200, "sign-up")["organizationId"]
        login = {"grant_type": "password", "username": "bench@example.com", "password": PASSWORD}
        token = expect(*request("POST", f"{base}/v1/auth/token", login), 200, "login")["access_token"]
        agent = {
            "displayName": "Front desk",
            "description": "The agent the bench reads.",
            "draft": {
                "languageCode": "en-US",
                "voice": "voices/v1",
                "prompt": "You are a call-center agent. Greet the caller and resolve their issue politely.",
                "firstMessage": "Hello! How can I help?",
            },
        }
        name = expect(
            *settled(lambda: request("POST", f"{base}/v1/organizations/{organization}/agents", agent, token)),
            200,
            "create agent",
        )["name"]
        url = f"{base}/v1/{name}"
        got = expect(*request("GET", url, token=token), 200, "sanity GET")
        if got.get("name") != name:
            raise BenchError(f"sanity GET returned {got!r}")
        expect(*request("GET", url), 401, "GET without a token")
        yield Target("vocelio", url, token, lambda: cpu_seconds(agents_pid))


@contextlib.contextmanager
def original_design(work: pathlib.Path) -> Iterator[Target]:
    """The original design's gateway and agents service, as its bench.sh starts and seeds them."""
    peer = peer_dir()
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    if subprocess.run([str(python), "-c", PEER_IMPORTS], capture_output=True, check=False).returncode != 0:
        pip = [str(PEER_VENV / "bin" / "pip"), "install", "-q", "-r", str(peer / "requirements.txt")]
        subprocess.run(pip, check=True)
    loop = ["--loop", "uvloop", "--http", "httptools"]
    if subprocess.run([str(python), "-c", "import uvloop, httptools"], capture_output=True).returncode != 0:
        loop = ["--loop", "asyncio", "--http", "h11"]
    uvicorn = [str(python), "-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--no-access-log"]
    uvicorn += ["--log-level", "warning", *loop, "--app-dir", str(peer)]
    service_port, gateway_port = free_port(), free_port()
    service = Child(
        "original agents service",
        [*uvicorn, "--port", str(service_port), "agents_service:app"],
        work / "original-service.log",
        env={"AGENTS_DB": str(work / "original-agents.db")},
    )
    with (
        service,
        Child(
            "original gateway",
            [*uvicorn, "--port", str(gateway_port), "gateway:app"],
            work / "original-gateway.log",
            env={"AGENTS_URL": f"http://127.0.0.1:{service_port}"},
        ) as gateway,
    ):
        wait_for(f"http://127.0.0.1:{service_port}/healthz", service, timeout=60)
        wait_for(f"http://127.0.0.1:{gateway_port}/healthz", gateway, timeout=60)
        seeded = subprocess.run(
            [str(python), str(peer / "seed.py"), "--url", f"http://127.0.0.1:{gateway_port}", "--count", "1000"],
            cwd=peer,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if seeded.returncode != 0:
            raise BenchError(f"seeding the original design failed: {seeded.stderr[-500:]}")
        agent_id, token = seeded.stdout.split()
        url = f"http://127.0.0.1:{gateway_port}/v1/agents/{agent_id}"
        got = expect(*request("GET", url, token=token), 200, "original sanity GET")
        if got.get("id") != agent_id:
            raise BenchError(f"original sanity GET returned {got!r}")
        expect(*request("GET", url), 401, "original GET without a token")
        yield Target("original", url, token)


# Measuring


def measure(target: Target, duration: float, warmup: float) -> Run:
    """A warm-up, then one measured wrk run (with the agents CPU around it for Vocelio)."""
    header = ["-H", f"Authorization: Bearer {target.token}"]
    if warmup:
        run_tool(wrk_argv(target.url, CONCURRENCY, warmup, header), None, warmup)
    before = target.agents_cpu() if target.agents_cpu else None
    done = run_tool(wrk_argv(target.url, CONCURRENCY, duration, header), None, duration)
    after = target.agents_cpu() if target.agents_cpu else None
    result = parse_wrk(done.output, CONCURRENCY, duration)
    if result.errors:
        raise BenchError(f"{target.side}: {result.errors} failed requests ({result.detail}):\n{done.output}")
    cpu = after - before if before is not None and after is not None else None
    return Run(target.side, result, cpu)


def print_run(run: Run, round_number: int) -> None:
    """One line per measured run."""
    cpu = f"  agents CPU {run.cpu_ms_per_request:.3f} ms/req" if run.cpu_ms_per_request is not None else ""
    result = run.result
    print(
        f"  round {round_number}  {run.side:<9} {result.rps:8.1f} req/s  "
        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms{cpu}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Start both systems, measure them alternating, print the figures and check the goals."""
    args = parse_args(argv)
    check_installed(["wrk"])
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-getagent-"))
    runs: list[Run] = []
    try:
        with terminate_on_sigterm(), vocelio(work) as ours, original_design(work) as theirs:
            print(f"GET /v1/agents/{{id}}, wrk -t1 -c{CONCURRENCY} -d{args.duration:g}s --latency, unpinned")
            print(f"  vocelio:  {ours.url}\n  original: {theirs.url}", flush=True)
            for number in range(1, args.rounds + 1):
                # Alternate which side goes first, so drift on the machine hits both alike.
                for target in (ours, theirs) if number % 2 else (theirs, ours):
                    run = measure(target, args.duration, args.warmup)
                    runs.append(run)
                    print_run(run, number)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        print(f"logs in {work}", file=sys.stderr)
        return 2
    finally:
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
    return report(runs, args)


def report(runs: list[Run], args: argparse.Namespace) -> int:
    """Print the medians, the ratio and the CPU per request; the exit status of the goals."""
    ours = [run for run in runs if run.side == "vocelio"]
    theirs = [run for run in runs if run.side == "original"]
    our_rps = statistics.median(run.result.rps for run in ours)
    their_rps = statistics.median(run.result.rps for run in theirs)
    cpu = statistics.median(run.cpu_ms_per_request or 0.0 for run in ours)
    ratio = our_rps / their_rps
    print("summary (medians of the rounds)")
    for side, side_runs, rps in (("vocelio", ours, our_rps), ("original", theirs, their_rps)):
        p50 = statistics.median(run.result.p50_ms for run in side_runs)
        p99 = statistics.median(run.result.p99_ms for run in side_runs)
        print(f"  {side:<9} {rps:8.1f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    ratio_ok, cpu_ok = ratio >= args.min_ratio, cpu <= args.max_cpu_ms
    print(f"  ratio vocelio / original: {ratio:.2f}x  (goal >= {args.min_ratio:g}x: {_verdict(ratio_ok)})")
    print(f"  agents CPU per GetAgent:  {cpu:.3f} ms  (goal <= {args.max_cpu_ms:g} ms: {_verdict(cpu_ok)})")
    if args.no_check or (ratio_ok and cpu_ok):
        return 0
    return 1


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
