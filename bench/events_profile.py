"""``make bench-events --profile``: where the events process spends its time, sampled with py-spy.

py-spy (``pip install py-spy`` into ``.venv``) attaches to the running events process for the length of one
measured run and writes collapsed stacks (``profile-<scenario>.txt`` beside summary.json, ready for
flamegraph.pl or speedscope). The bench prints the project's own functions that were on the stack most
often (inclusive: a function counts when it or anything it called was running), which is usually enough
to say where an append's time goes; idle samples (the event loop waiting) are left out by py-spy itself.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
import signal
import subprocess
import sys

from bench.processes import BenchError

OURS = ("services/", "mesh/", "interceptors/", "runtime/")
"""Path fragments of the project's own code, the frames worth naming."""


class Sampler:
    """py-spy recording one process until :meth:`stop` (nothing at all unless :meth:`start` was called)."""

    def __init__(self, pid: int, output: pathlib.Path) -> None:
        self.pid = pid
        self.output = output
        self._process: subprocess.Popen[bytes] | None = None
        self.samples: dict[str, int] = {}

    def start(self) -> None:
        """Attach py-spy (100 samples/s, Python frames, collapsed output)."""
        spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
        if not pathlib.Path(spy).exists():
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
        argv = [spy, "record", "-p", str(self.pid), "-r", "100", "-f", "raw", "-o", str(self.output)]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Stop sampling (py-spy writes its file on SIGINT) and load the stacks."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            _, error = self._process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise BenchError("py-spy did not stop within 20 s") from None
        if not self.output.exists():
            raise BenchError(f"py-spy wrote nothing: {error.decode(errors='replace')[-300:]}")
        self.samples = load(self.output)


def load(path: pathlib.Path) -> dict[str, int]:
    """Collapsed stacks (``frame;frame;… count`` lines) as a mapping."""
    stacks: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] = stacks.get(stack, 0) + int(count)
    return stacks


def _function(frame: str) -> str:
    # "name (path/to/file.py:123)" → "name (path/to/file.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def hottest(stacks: dict[str, int], count: int = 12) -> list[str]:
    """The project's functions most often on the stack, as printable lines (share of the busy samples)."""
    total = sum(stacks.values())
    inclusive: collections.Counter[str] = collections.Counter()
    for stack, samples in stacks.items():
        for function in {_function(frame) for frame in stack.split(";")}:
            if any(part in function for part in OURS):
                inclusive[function] += samples
    lines = [f"profile: {total} busy samples (100/s); the project's functions most on the stack:"]
    lines += [f"  {samples / total:5.1%}  {function}" for function, samples in inclusive.most_common(count)]
    leaves: collections.Counter[str] = collections.Counter()
    for stack, samples in stacks.items():
        where = stack.rsplit(";", 1)[-1].partition(" (")[2]
        leaves[where.split("/")[0].split(".py")[0] or "?"] += samples
    lines.append(
        "profile: where the samples ended (package of the innermost frame): "
        + ", ".join(f"{package} {samples / total:.0%}" for package, samples in leaves.most_common(8))
    )
    return lines
