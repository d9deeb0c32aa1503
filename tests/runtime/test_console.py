"""make run's console: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from runtime.console import MeshConsole

ROWS = [("agents", "127.0.0.1:8002", "41", "SERVING"), ("edge", "127.0.0.1:8000", "42", "HTTP 503")]


def test_plain_output_when_not_a_terminal():
    out = io.StringIO()
    console = MeshConsole(out)
    assert not console.fancy
    with console.coming_up(2) as update:
        update(1)  # no progress display in a log
    console.table(ROWS)
    console.say("mesh ready: [1/1] services")
    assert out.getvalue().splitlines() == [
        "SERVICE  ADDRESS         PID  HEALTH",
        "agents   127.0.0.1:8002  41   SERVING",
        "edge     127.0.0.1:8000  42   HTTP 503",
        "[vocelio] mesh ready: [1/1] services",
    ]


def test_rich_table_and_progress_on_a_terminal():
    out = io.StringIO()
    console = MeshConsole(out, force_terminal=True)
    assert console.fancy
    with console.coming_up(2) as update:
        update(1)
        update(2)
    console.table(ROWS)
    console.say("mesh ready: [1/1] services")  # square brackets are text, not markup
    text = out.getvalue()
    assert "└─" in text  # a rich table's box
    assert "SERVICE" in text
    assert "127.0.0.1:8002" in text
    assert "HTTP 503" in text
    assert "[1/1] services" in text
    assert "\x1b[" in text  # colours
