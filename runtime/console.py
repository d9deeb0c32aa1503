"""What ``make run`` shows on the console: rich on a terminal, plain lines anywhere else.

On a terminal the mesh's start shows a live progress bar (services SERVING so far) and the
status table is a rich table with coloured health. When the output is not a terminal (a log
file, CI, a test reading the pipe) the same information is plain text, one line at a time,
``[vocelio] …`` messages and a space-aligned table, so it stays easy to grep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

HEADERS = ("SERVICE", "ADDRESS", "PID", "HEALTH")
_HEALTHY = ("SERVING", "HTTP 200")


class MeshConsole:
    """The supervisor's console output."""

    def __init__(self, out: TextIO, *, force_terminal: bool | None = None) -> None:
        self.out = out
        self.console = Console(file=out, highlight=False, force_terminal=force_terminal, soft_wrap=True)
        self.fancy = self.console.is_terminal

    def say(self, message: str) -> None:
        """One message of the supervisor."""
        if self.fancy:
            self.console.print(f"[bold cyan]\\[vocelio][/] {escape(message)}")
        else:
            self.out.write(f"[vocelio] {message}\n")
            self.out.flush()

    def table(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """The status table: service, address, pid and health per row."""
        if self.fancy:
            table = Table(*HEADERS, header_style="bold")
            for name, address, pid, health in rows:
                colour = "green" if health in _HEALTHY else "red"
                table.add_row(name, address, pid, f"[{colour}]{escape(health)}[/]")
            self.console.print(table)
            return
        lines = [HEADERS, *rows]
        widths = [max(len(row[i]) for row in lines) for i in range(len(HEADERS))]
        for row in lines:
            self.out.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
            )
        self.out.flush()

    @contextlib.contextmanager
    def coming_up(self, total: int) -> Iterator[Callable[[int], None]]:
        """While the mesh comes up: yields ``update(serving)``; a live progress bar on a terminal."""
        if not self.fancy:
            yield lambda _serving: None
            return
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        with progress:
            task = progress.add_task("processes SERVING", total=total)
            yield lambda serving: progress.update(task, completed=serving)
