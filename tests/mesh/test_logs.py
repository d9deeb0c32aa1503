"""The log set-up: JSON and text lines, the ids of the call, the non-blocking writer and its bounded close."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from mesh import logs, request_id

TRACER = TracerProvider().get_tracer("tests.mesh.test_logs")


def _record(message: str = "hello %s", *args: object, **attributes: object) -> logging.LogRecord:
    record = logging.LogRecord("vocelio.test", logging.WARNING, __file__, 1, message, args or ("world",), None)
    record.created = 1796659790.1234  # 2026-12-07T16:09:50.123Z
    record.__dict__.update(attributes)
    return record


def test_a_json_line_has_the_fields_ops_expect() -> None:
    line = logs.JsonFormatter("agents").format(_record(request_id="r-1", fields={"code": "OK", "message": "no"}))
    assert json.loads(line) == {
        "time": "2026-12-07T16:09:50.123Z",
        "level": "WARNING",
        "process": "agents",
        "logger": "vocelio.test",
        "message": "hello world",
        "request_id": "r-1",
        "code": "OK",  # fields never replace the standard keys ("message" stayed)
    }
    assert "\n" not in logs.JsonFormatter("agents").format(_record("two\n%s"))


def test_an_error_line_carries_its_exception_text() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord(
            "vocelio.test", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    entry = json.loads(logs.JsonFormatter("agents").format(record))
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback") and "ValueError: broken" in entry["exception"]


def test_the_call_context_stamps_trace_span_and_request_ids() -> None:
    record = _record()
    with TRACER.start_as_current_span("call") as span, request_id.bound("req-7"):
        logs.CallContext().filter(record)
    context = span.get_span_context()
    entry = json.loads(logs.JsonFormatter("agents").format(record))
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")
    assert entry["request_id"] == "req-7"
    bare = _record()
    logs.CallContext().filter(bare)
    assert not {"trace_id", "span_id", "request_id"} & set(json.loads(logs.JsonFormatter("x").format(bare)))


def test_a_text_line_is_readable_and_names_the_ids() -> None:
    line = logs.TextFormatter("edge").format(_record(request_id="r-1", fields={"code": "OK", "principal": ""}))
    assert line.endswith("WARNING edge vocelio.test: hello world request_id=r-1 code=OK")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert isinstance(logs.formatter_for("auto", "p", _Terminal()), logs.TextFormatter)
    assert isinstance(logs.formatter_for("auto", "p", io.StringIO()), logs.JsonFormatter)
    assert isinstance(logs.formatter_for("json", "p", _Terminal()), logs.JsonFormatter)
    assert isinstance(logs.formatter_for("text", "p", io.StringIO()), logs.TextFormatter)


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_writes_every_record_of_the_process_as_json(root_restored: None) -> None:
    out = io.StringIO()
    pipeline = logs.configure("INFO", "agents", "json", stream=out)
    logging.getLogger("vocelio.a").info("one %d", 1)
    logging.getLogger("vocelio.b").debug("below the level")
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("vocelio.c").exception("two")
    assert pipeline.close()
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["logger"], e["message"]) for e in entries] == [("vocelio.a", "one 1"), ("vocelio.c", "two")]
    assert "KeyError: 'k'" in entries[1]["exception"]


class _Blocked(io.StringIO):
    """A stream whose writes wait until released (a full pipe, a stuck disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(30)
        return super().write(text)


def test_a_stuck_stream_never_blocks_the_logger_and_close_is_bounded() -> None:
    stream = _Blocked()
    pipeline = logs.LogPipeline(stream, logs.JsonFormatter("p"), limit=3)
    logger = logging.getLogger("vocelio.stuck")
    logger.propagate = False
    logger.addHandler(pipeline.handler)
    try:
        for number in range(10):
            logger.warning("line %d", number)  # returns at once although nothing can be written
        assert pipeline.handler.dropped >= 10 - 3 - 1  # the writer holds at most one batch
        assert not pipeline.close(timeout=0.05)  # bounded: gives up while the write hangs
    finally:
        stream.release.set()
        logger.removeHandler(pipeline.handler)
        logger.propagate = True
    assert pipeline.close(timeout=10)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[-1]["message"] == f"{pipeline.handler.dropped} log records dropped: the writer could not keep up"
    assert len(lines) == 10 - pipeline.handler.dropped + 1


def test_closing_an_idle_pipeline_writes_nothing() -> None:
    stream = io.StringIO()
    assert logs.LogPipeline(stream, logs.JsonFormatter("p")).close()
    assert stream.getvalue() == ""


def test_direct_hands_out_the_pipeline_only_when_nothing_else_listens(root_restored: None) -> None:
    logger = logging.getLogger("vocelio.direct")
    pipeline = logs.configure("INFO", "agents", "json", stream=io.StringIO())
    try:
        assert logs.direct(logger) is pipeline.handler
        other = logging.NullHandler()
        logging.getLogger().addHandler(other)  # what pytest's caplog does
        assert logs.direct(logger) is None
        logging.getLogger().removeHandler(other)
        stamp = logging.Filter("nothing")
        logger.addFilter(stamp)
        assert logs.direct(logger) is None
        logger.removeFilter(stamp)
        logger.addHandler(other)
        assert logs.direct(logger) is None
        logger.removeHandler(other)
        logger.propagate = False
        assert logs.direct(logger) is None
        logger.propagate = True
        assert logs.direct(logger) is pipeline.handler
    finally:
        assert pipeline.close()


def _line(**overrides: Any) -> logs.Line:
    values: dict[str, Any] = {
        "created": 1796659790.1234,
        "level": logging.WARNING,
        "logger": "vocelio.rpc",
        "msg": "%s %s %.2f ms",
        "args": ("/t.S/M", "OK", 1.234),
        "fields": {"code": "OK", "message": "never replaces the message"},
        "trace_id": 0xABC,
        "span_id": 0xDEF,
        "request_id": "r-1",
    }
    return logs.Line(**(values | overrides))


def test_a_line_is_written_as_the_record_would_have_been(root_restored: None) -> None:
    line = _line()
    record = line.record()
    expected = json.loads(logs.JsonFormatter("agents").format(record))
    assert json.loads(logs.JsonFormatter("agents").format_line(line)) == expected
    assert expected["message"] == "/t.S/M OK 1.23 ms"
    assert (expected["trace_id"], expected["span_id"], expected["request_id"]) == (
        f"{0xABC:032x}",
        f"{0xDEF:016x}",
        "r-1",
    )
    bare = json.loads(logs.JsonFormatter("agents").format_line(_line(trace_id=0, span_id=0, request_id="")))
    assert not {"trace_id", "span_id", "request_id"} & set(bare)
    formats: tuple[logs.LogFormat, ...] = ("json", "text")
    for log_format in formats:
        out = io.StringIO()
        pipeline = logs.configure("INFO", "agents", log_format, stream=out)
        pipeline.handler.put_line(line)
        assert pipeline.close()
        [written] = out.getvalue().splitlines()
        if log_format == "json":
            assert json.loads(written) == expected
        else:
            assert written.endswith(
                f"WARNING agents vocelio.rpc: /t.S/M OK 1.23 ms trace_id={0xABC:032x} span_id={0xDEF:016x} "
                "request_id=r-1 code=OK message=never replaces the message"
            )
