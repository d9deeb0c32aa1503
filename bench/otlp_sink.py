"""A local OTLP/HTTP trace receiver that counts the spans it is sent, for ``bench.chain``'s tracing-on run.

It accepts ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (binary protobuf, gzip or not, as
``opentelemetry-exporter-otlp-proto-http`` sends it), counts the spans inside and answers an empty
``ExportTraceServiceResponse`` — so a server traced with ``OTEL_TRACES_EXPORTER=otlp`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing here pays the whole exporter pipeline (batching, encoding, HTTP),
and the bench can see that spans really left the server. Anything else is answered 404 (wrong path) or 400
(an undecodable body) and counted as failed.

On ``SIGUSR1`` it prints ``served ok=SPANS failed=REQUESTS``: the line of ``bench.upstream``, counting
spans received and export requests refused. Run with ``python -m bench.otlp_sink [PORT]``; the first line
printed is ``otlp sink on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import gzip
import http.server
import signal
import sys
import threading
from types import FrameType

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench.upstream import COUNT_PREFIX

READY_PREFIX = "otlp sink on "
PATH = "/v1/traces"


class Counts:
    """Spans received and export requests refused, shared by the handler threads."""

    def __init__(self) -> None:
        self.spans = 0
        self.failed = 0
        self.lock = threading.Lock()


COUNTS = Counts()
_EMPTY_RESPONSE = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


def span_count(body: bytes, encoding: str) -> int:
    """How many spans an ``ExportTraceServiceRequest`` body holds; DecodeError or OSError if it is not one."""
    if encoding == "gzip":
        body = gzip.decompress(body)
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


class Handler(http.server.BaseHTTPRequestHandler):
    """``POST /v1/traces``: count, then answer 200 with an empty export response."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Count the spans of one export request."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != PATH:
            self._answer(404, b"", failed=True)
            return
        try:
            spans = span_count(body, self.headers.get("Content-Encoding", ""))
        except (DecodeError, OSError):
            self._answer(400, b"", failed=True)
            return
        with COUNTS.lock:
            COUNTS.spans += spans
        self._answer(200, _EMPTY_RESPONSE, failed=False)

    def _answer(self, status: int, body: bytes, *, failed: bool) -> None:
        if failed:
            with COUNTS.lock:
                COUNTS.failed += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per export request would only add noise."""


def report(_number: int, _frame: FrameType | None) -> None:
    """Print the counters as the line the bench parses."""
    with COUNTS.lock:
        spans, failed = COUNTS.spans, COUNTS.failed
    print(f"{COUNT_PREFIX}ok={spans} failed={failed}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until SIGTERM."""
    args = sys.argv[1:] if argv is None else argv
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(args[0]) if args else 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGUSR1, report)
    signal.signal(signal.SIGTERM, lambda _number, _frame: threading.Thread(target=server.shutdown).start())
    print(f"{READY_PREFIX}127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
