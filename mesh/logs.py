"""The one logging set-up of every Vocelio process: one line per record, JSON or text.

``VOCELIO_LOG_FORMAT`` picks the line format. ``json`` (what files under ``var/log`` and
log shippers want) writes one object per record::

    {"time": "2026-12-07T15:49:50.123Z", "level": "INFO", "process": "agents",
     "logger": "vocelio.rpc", "message": "...", "trace_id": "…", "span_id": "…",
     "request_id": "…", "exception": "Traceback …", ...fields}

``trace_id``/``span_id`` come from OpenTelemetry's current span and ``request_id`` from
:mod:`mesh.request_id`, each only when known; ``exception`` only for a record with one;
a record logged with ``extra={"fields": {...}}`` adds those keys (the per-RPC line does).
``text`` writes ``time level process logger: message key=value …`` for people;
``auto`` (the default) is text on a terminal and JSON anywhere else, so ``make run``'s
console stays readable while its children's files get JSON.

The event loop never waits for a write: the ids are captured and the message formatted
on the logging thread (cheap), then the record goes onto a queue that one writer thread
formats and writes in batches. A full queue drops records (counted, and said once the
writer catches up) rather than stall the loop. :meth:`LogPipeline.close` (also run at
exit) flushes in bounded time.

The writer lingers :data:`LINGER` seconds after the first record of a batch before it takes
the rest: a busy server then wakes it a few times a second instead of once per record or
two, and each wake-up is a thread switch and a GIL hand-over on the loop's core (measured:
the per-RPC line cost a trivial call ~110 µs of server CPU, most of it not the formatting).

A line per call (``interceptors/rpc_log.py``) need not be a ``LogRecord`` at all: when the
records of a logger reach only this pipeline (no handler or filter of anyone else's — a
test's ``caplog`` adds one), :func:`direct` hands out the pipeline's handler and the caller
queues a :class:`Line` — a tuple of what was known on the loop (time, level, message
arguments, fields, the ids as numbers) — which the writer formats into the same JSON (or
text) line a record would have given.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, TextIO

from opentelemetry import trace

from mesh import request_id

LogFormat = Literal["json", "text", "auto"]

# Records waiting for the writer; past this many, new ones are dropped (and counted).
QUEUE_LIMIT = 10_000
# How long closing waits for the writer to write what is queued.
CLOSE_TIMEOUT = 2.0
# Seconds the writer waits after the first record of a batch, so that a busy process wakes it seldom.
LINGER = 0.1
_CONTEXT_KEYS = ("trace_id", "span_id", "request_id")
_BASE_KEYS = frozenset({"time", "level", "process", "logger", "message", "exception", "stack", *_CONTEXT_KEYS})


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
# The writer thread formats one record after another: the date part changes once a second.
_last_second: tuple[int, str] = (-1, "")


def _utc(created: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-12-07T15:49:50.123Z``."""
    global _last_second
    seconds = int(created)
    cached_second, prefix = _last_second
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, prefix)
    return f"{prefix}.{int((created - seconds) * 1000):03d}Z"


class Line(NamedTuple):
    """A log line captured on the loop without a ``LogRecord``; the writer formats it (see :func:`direct`)."""

    created: float
    level: int
    logger: str
    msg: str
    args: tuple[Any, ...]
    fields: Mapping[str, Any]
    trace_id: int
    """0 outside a trace."""
    span_id: int
    request_id: str

    def record(self) -> logging.LogRecord:
        """The same line as a ``LogRecord``, for a formatter that only knows records."""
        record = logging.makeLogRecord(
            {
                "name": self.logger,
                "levelno": self.level,
                "levelname": logging.getLevelName(self.level),
                "msg": self.msg % self.args,
                "created": self.created,
                "fields": self.fields,
            }
        )
        if self.trace_id:
            record.trace_id = format(self.trace_id, "032x")
            record.span_id = format(self.span_id, "016x")
        if self.request_id:
            record.request_id = self.request_id
        return record


class JsonFormatter(logging.Formatter):
    """One JSON object per record (the keys are listed in the module docstring)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (no newline inside: strings are escaped)."""
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, "")
            if value:
                entry[key] = value
        fields: Mapping[str, Any] | None = getattr(record, "fields", None)
        if fields:
            entry.update((key, value) for key, value in fields.items() if key not in _BASE_KEYS)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode(entry)

    def format_line(self, line: Line) -> str:
        """A :class:`Line` as the JSON :meth:`format` gives for the same record."""
        entry: dict[str, Any] = {
            "time": _utc(line.created),
            "level": logging.getLevelName(line.level),
            "process": self.process,
            "logger": line.logger,
            "message": line.msg % line.args,
        }
        if line.trace_id:
            entry["trace_id"] = format(line.trace_id, "032x")
            entry["span_id"] = format(line.span_id, "016x")
        if line.request_id:
            entry["request_id"] = line.request_id
        entry.update((key, value) for key, value in line.fields.items() if key not in _BASE_KEYS)
        return _encode(entry)


class TextFormatter(logging.Formatter):
    """``time level process logger: message`` and then the ids and fields as ``key=value``."""

    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The standard line with the known ids and the record's fields after it."""
        line = super().formatMessage(record)
        pairs = [(key, getattr(record, key, "")) for key in _CONTEXT_KEYS]
        fields: Mapping[str, Any] | None = getattr(record, "fields", None)
        if fields:
            pairs.extend(fields.items())
        extra = " ".join(f"{key}={value}" for key, value in pairs if value not in ("", None))
        return f"{line} {extra}" if extra else line


class CallContext(logging.Filter):
    """Stamps each record with the trace, span and request ids of the code that logged it.

    It runs where the record is made (the event loop), since the writer thread does not
    see the call's context.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``trace_id``, ``span_id`` and ``request_id`` when known; never drops a record."""
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        rid = request_id.current()
        if rid:
            record.request_id = rid
        return True


class _Enqueue(logging.Handler):
    """Hands records to the writer thread; never blocks, drops (and counts) when the queue is full."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | Line | None], limit: int) -> None:
        super().__init__()
        self._records = records
        self._limit = limit
        self.dropped = 0
        self.context = CallContext()
        self.addFilter(self.context)

    def put_line(self, line: Line) -> None:
        """Queue a :class:`Line` (see :func:`direct`); dropped and counted when the queue is full."""
        if self._records.qsize() >= self._limit:
            self.dropped += 1
            return
        self._records.put(line)

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue the record without taking the handler's lock (a queue put is thread-safe)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Fix the message now (its arguments may change later) and queue the record."""
        if self._records.qsize() >= self._limit:
            self.dropped += 1
            return
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            # Other handlers (pytest's) may still read exc_info: give the writer a copy with the text.
            text = logging.Formatter().formatException(record.exc_info)
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info, record.exc_text = None, text
        self._records.put(record)


class LogPipeline:
    """The queue and writer thread of :func:`configure`; :meth:`close` flushes and stops it."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter, limit: int = QUEUE_LIMIT) -> None:
        self.stream = stream
        self.formatter = formatter
        self._records: queue.SimpleQueue[logging.LogRecord | Line | None] = queue.SimpleQueue()
        self.handler = _Enqueue(self._records, limit)
        self._reported = 0
        self._writer = threading.Thread(target=self._write, name="vocelio-log-writer", daemon=True)
        self._writer.start()

    def _write(self) -> None:
        while True:
            record = self._records.get()
            if record is not None:
                time.sleep(LINGER)  # let the batch fill: one wake-up for many records
            lines: list[str] = []
            stop = False
            while True:
                if record is None:
                    stop = True
                    break
                lines.append(self._line(record))
                if len(lines) >= 1024:
                    break
                try:
                    record = self._records.get_nowait()
                except queue.Empty:
                    break
            dropped = self.handler.dropped - self._reported
            if dropped:
                self._reported += dropped
                lines.append(self._line(_dropped_record(dropped)))
            try:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream: nothing else to write the complaint to
            if stop:
                return

    def _line(self, record: logging.LogRecord | Line) -> str:
        try:
            if isinstance(record, Line):
                if isinstance(self.formatter, JsonFormatter):
                    return self.formatter.format_line(record)
                record = record.record()
            return self.formatter.format(record)
        except Exception as error:  # noqa: BLE001 - one bad record must not stop the writer
            name = record.logger if isinstance(record, Line) else record.name
            return f"unformattable log record from {name}: {type(error).__name__}"

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Write what is queued and stop the writer; ``False`` if it did not finish within ``timeout``."""
        if not self._writer.is_alive():
            return True
        self._records.put(None)
        self._writer.join(timeout)
        return not self._writer.is_alive()


def _dropped_record(count: int) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": __name__,
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": f"{count} log records dropped: the writer could not keep up",
            "created": time.time(),
        }
    )


_active: LogPipeline | None = None


def direct(logger: logging.Logger) -> _Enqueue | None:
    """The active pipeline's handler if ``logger``'s records reach it and nothing else, else ``None``.

    Then a caller may queue a :class:`Line` with :meth:`_Enqueue.put_line` instead of making a record
    (the caller has checked the level). Anything else on the way — a handler or filter on the logger or
    a parent, another handler on the root (pytest's ``caplog``), a disabled logger — means ``None``: log
    a record as usual. Cheap enough to ask per line.
    """
    pipeline = _active
    if pipeline is None or logger.disabled or logger.filters:
        return None
    handler = pipeline.handler
    # Only the first logger's filters apply to a record; every logger up to the root adds its handlers.
    current = logger
    while current.parent is not None:
        if current.handlers or not current.propagate:
            return None
        current = current.parent
    if len(current.handlers) != 1 or current.handlers[0] is not handler:
        return None
    if handler.level or len(handler.filters) != 1:
        return None
    return handler


def formatter_for(log_format: LogFormat, process: str, stream: TextIO) -> logging.Formatter:
    """The formatter of ``log_format`` (``auto``: text when ``stream`` is a terminal, else JSON)."""
    if log_format == "auto":
        log_format = "text" if _is_terminal(stream) else "json"
    return TextFormatter(process) if log_format == "text" else JsonFormatter(process)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure(level: str, process: str, log_format: LogFormat = "auto", *, stream: TextIO | None = None) -> LogPipeline:
    """Send every log record of the process to ``stream`` (stderr) in ``log_format``.

    Replaces the root logger's handlers (and closes the pipeline of an earlier call).
    """
    global _active
    stream = stream if stream is not None else sys.stderr
    if _active is not None:
        _active.close()
    pipeline = LogPipeline(stream, formatter_for(log_format, process, stream))
    _active = pipeline
    root = logging.getLogger()
    root.handlers[:] = [pipeline.handler]
    root.setLevel(level)
    # SQLAlchemy and uvicorn are chatty at INFO; their warnings still come through.
    for noisy in ("sqlalchemy", "alembic.runtime.migration", "alembic.runtime.plugins", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return pipeline


@atexit.register
def _close_at_exit() -> None:
    if _active is not None:
        _active.close()
