"""Edge metrics across worker processes: with PROMETHEUS_MULTIPROC_DIR every worker's counts are summed.

prometheus_client picks its file-backed values when it is imported, so each "worker" is a
real Python process started with the variable set, as the edge's parent starts them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families

from gateway_rest.metrics import OTHER_METHOD, EdgeMetrics

ROOT = pathlib.Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import pathlib, sys
    from gateway_rest.metrics import EdgeMetrics
    metrics = EdgeMetrics(multiprocess_dir=pathlib.Path(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        metrics.observe("GET", "/v1/{name=agents/*}", "/a.v1.A/GetA", 200, 0.01, "OK")
    if sys.argv[3] == "render":
        sys.stdout.write(metrics.render().decode())
    """
)


def _worker(directory: pathlib.Path, calls: int, render: bool = False) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(directory), str(calls), "render" if render else "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    return done.stdout


def test_the_workers_counts_are_summed(tmp_path: pathlib.Path):
    _worker(tmp_path, 2)
    _worker(tmp_path, 3)
    text = _worker(tmp_path, 1, render=True)
    labels = {"method": "GET", "route": "/v1/{name=agents/*}", "grpc_method": "/a.v1.A/GetA"}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("vocelio_edge_requests_total", frozenset({**labels, "status": "200"}.items()))] == 6
    assert samples[("vocelio_edge_request_duration_seconds_count", frozenset(labels.items()))] == 6


def test_without_the_variable_the_render_is_this_process_and_its_collectors():
    metrics = EdgeMetrics()
    metrics.observe("BREW", "unmatched", "", 404, 0.001, "NOT_FOUND")  # an unknown method is "other"
    text = metrics.render().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"vocelio_edge_requests", "python_info"} <= names
    assert f'method="{OTHER_METHOD}"' in text
    assert "BREW" not in text
