"""The processes under test: start them pinned to a core, read their CPU time, always stop them."""

from __future__ import annotations

import contextlib
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Self

from bench.upstream import COUNT_PREFIX, READY_PREFIX

REPO = pathlib.Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the run is invalid."""


def child_environment() -> dict[str, str]:
    """The current environment without ``VOCELIO_*`` settings (the edge runs on defaults), the repo importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VOCELIO_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads) so far, from /proc."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_seconds() -> dict[int | None, float]:
    """CPU time spent busy since boot (anything but idle and iowait; steal counts): per core, and in all (None)."""
    busy: dict[int | None, float] = {}
    for line in pathlib.Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *values = line.split()
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        fields = [int(value) for value in values[:8]]
        core = None if name == "cpu" else int(name[3:])
        busy[core] = (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS
    return busy


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU time so far of every live process in process group ``pgid`` (a leader and its workers)."""
    total = 0.0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[2] is the process group (field 5 of proc(5))
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def group_size(pgid: int) -> int:
    """How many live processes process group ``pgid`` has."""
    count = 0
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            count += int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid
    return count


def pinned(core: int | str, argv: Sequence[str]) -> list[str]:
    """``argv`` run on one CPU core or a taskset list (``"0,1"``); taskset execs, so the pid is the program's own."""
    return ["taskset", "-c", str(core), *argv]


class Child:
    """A long-running child process in its own process group, stopped (group and all) on ``close``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: pathlib.Path,
        *,
        capture_stdout: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``argv``; ``env`` adds to (or overrides) :func:`child_environment`."""
        self.name = name
        self.log = log
        self._log_file: IO[bytes] = log.open("wb")
        self._lines: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env={**child_environment(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self._log_file,
            stderr=self._log_file,
            start_new_session=True,
        )
        if capture_stdout:
            threading.Thread(target=self._pump, name=f"{name}-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        """The process id (its process group id too)."""
        return self.process.pid

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._log_file.write(raw)
            self._log_file.flush()
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))

    def next_line(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with ``prefix``; raises BenchError if it does not come in time."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=min(left, 0.1))
            except queue.Empty:
                self.check_alive()
                continue
            if line.startswith(prefix):
                return line
        raise BenchError(f"{self.name}: no line starting {prefix!r} within {timeout:.0f}s (see {self.log})")

    def check_alive(self) -> None:
        """Raise BenchError if the process has exited."""
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.process.returncode} (see {self.log})")

    def cpu_seconds(self) -> float:
        """CPU time the process has used so far."""
        self.check_alive()
        return cpu_seconds(self.pid)

    def close(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after a grace period."""
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)
                    self.process.wait(timeout=5)
            else:
                # the leader is gone; make sure nothing it started is left behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._log_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class CountingServer(Child):
    """A gRPC server pinned to a core that counts the calls it answered (``served ok=N failed=M`` on SIGUSR1).

    It prints one ready line ending with its ``host:port`` when it listens.
    """

    def __init__(
        self,
        name: str,
        core: int,
        argv: Sequence[str],
        ready_prefix: str,
        log: pathlib.Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, pinned(core, argv), log, capture_stdout=True, env=env)
        try:
            self.address = self.next_line(ready_prefix, timeout=30).split()[-1]
        except BaseException:
            self.close()
            raise

    def served(self) -> tuple[int, int]:
        """How many calls it answered so far: (OK, failed)."""
        self.check_alive()
        os.kill(self.pid, signal.SIGUSR1)
        fields = dict(item.split("=") for item in self.next_line(COUNT_PREFIX, timeout=10).split()[1:])
        return int(fields["ok"]), int(fields["failed"])


class Upstream(CountingServer):
    """The counting conformance gRPC server (``bench.upstream``)."""

    def __init__(self, core: int, log: pathlib.Path) -> None:
        argv = [sys.executable, "-m", "bench.upstream", "0"]
        super().__init__("upstream gRPC server", core, argv, READY_PREFIX, log)


class Edge(Child):
    """The REST edge in generic mode, fronting one upstream described by the test descriptor set.

    ``core`` is one core or a taskset list (an edge with several worker processes spreads over them);
    ``env`` adds settings (``VOCELIO_EDGE_WORKERS``). Its CPU time is that of its whole process group.
    """

    def __init__(
        self,
        core: int | str,
        upstream: str,
        descriptor_set: pathlib.Path,
        log: pathlib.Path,
        *,
        env: Mapping[str, str] | None = None,
        name: str = "REST edge",
    ) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "gateway_rest", "--descriptor-set", str(descriptor_set)]
        argv += ["--upstream", upstream, "--listen", self.address]
        super().__init__(name, pinned(core, argv), log, env=env)

    def cpu_seconds(self) -> float:
        """CPU time the edge and its worker processes have used so far."""
        self.check_alive()
        return group_cpu_seconds(self.pid)

    def processes(self) -> int:
        """How many processes the edge runs (1, or a parent and its workers)."""
        return group_size(self.pid)

    def get(self, path: str) -> bytes:
        """``GET path`` once: the body of a 200; BenchError for any other status, OSError if unreachable."""
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as response:
                body: bytes = response.read()
                if response.status != 200:
                    raise BenchError(f"edge GET {path}: HTTP {response.status}")
                return body
        except urllib.error.HTTPError as error:
            raise BenchError(f"edge GET {path}: HTTP {error.code}: {error.read()[:200]!r}") from error

    def wait_ready(self, path: str, timeout: float = 30) -> None:
        """Poll ``GET path`` until it answers 200; BenchError if it does not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.get(path)
                return
            except (BenchError, OSError) as error:
                last = str(error)
            time.sleep(0.1)
        raise BenchError(f"edge never answered 200 on {path} within {timeout:.0f}s ({last}; see {self.log})")


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit for the duration, so ``finally`` blocks stop the children."""

    def _exit(number: int, _frame: object) -> None:
        raise SystemExit(128 + number)

    previous = {sig: signal.signal(sig, _exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
