"""`make bench`'s pieces that can be checked without its ten minutes: the report it writes, and its load
generators against the floor server when Debian's wrk and hey are installed (`make bench` installs them)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from wfboost.tls.certs import write_local_material
from wfboost_dev.bench import loadgen, profile, report
from wfboost_dev.bench.loadgen import Result
from wfboost_dev.demo.processes import free_port


def results() -> dict[str, Any]:
    pair = {"floor": Result(5000, 10.0, 0, 1.0, 4.0, 9.0), "wfboost": Result(2500, 10.0, 0, 2.0, 8.0, 20.0)}
    return {
        "elapsed_s": 400.0,
        "machine": {"cpu": "a CPU", "cores": "2", "memory": "24 GiB", "python": "3.11.7", "kernel": "6.1"},
        "versions": {"wrk": "4.1.0", "hey": "0.1.4", "valkey": "9.1.2"},
        "paths": {"pod CREATE, miss": pair},
        "rates": {"pod CREATE, miss": {(100, 1): pair, (100, 8): pair, (500, 8): pair}},
        "paced": {"pod CREATE, hit": {(500, 8): pair}},
        "profile": profile.shares("main (wfboost/webhook/server.py:1);lookup (wfboost/cache/store.py:9) 30\n"
                                  "main (wfboost/webhook/server.py:1);read (aiohttp/web_protocol.py:5) 70\n"),
        "workers": {"pod CREATE, miss (1 worker)": pair, "pod CREATE, miss": pair},
        "redis_memory": {"entries": 100_000, "bytes": 131_000_000, "per_entry": 1310.0},
        "shrink": {"kubeflow": [{"tasks": 100, "before": 1000, "defaults": 600, "defaults_s": 0.1, "tables": 400,
                                 "tables_s": 0.1}],
                   "corpus": {"defaults": {"present": False, "path": "/nowhere"}, "lowest": {"present": False}}},
        "status": ["status line"],
        "latch": ["latch line"],
        "etcd_run": {"workflows": 2, "tasks": 60,
                     "without": {"bytes": {"Workflow": 4000, "pods": 1000}, "total": 5000, "db_growth": 6000,
                                 "writes": 10},
                     "with": {"bytes": {"Workflow": 1000, "pods": 1000}, "total": 2000, "db_growth": 3000,
                              "writes": 10}},
    }


def test_the_report_puts_every_number_beside_its_floor(tmp_path: Path) -> None:
    text = report.write(results(), tmp_path)
    assert (tmp_path / "benchmarks.md").read_text() == text
    assert "| pod CREATE, miss | 500 | 250 | 0.50 | 2.00 | 8.00 | 20.00 | 1.00 / 4.00 | 0 |" in text
    assert "| pod CREATE, miss | 100 | 8 | 250 | 2.0 | 8.0 | 20.0 | 1.0 / 4.0 / 9.0 | 2.00 |" in text
    assert "| pod CREATE, miss | 2 | 500 | 250 | 0.50 | 8.0 |" in text
    assert "1,310 bytes per entry" in text and "The corpus was not at /nowhere" in text
    assert "a CPU, 2 cores, 24 GiB" in text and "Written by `make bench`" in text
    assert "| pod CREATE, hit | 500 | 8 | 250 | 2.00 | 8.00 | 20.00 | 1.00 / 4.00 / 9.00 | 2.00 |" in text
    assert "| pod CREATE, miss, one worker: ≥ 0.4× the floor's throughput | 0.50× | yes |" in text
    assert "| pod CREATE, hit at 500 req/s: p99 ≤ 2× the floor's | 2.00× | yes |" in text
    assert "| the lookup (one Redis round trip) | 30% |" in text and "| HTTPS and HTTP (aiohttp, ssl) | 70% |" in text
    assert "| Workflow | 4,000 | 1,000 | 0.25 |" in text and "| all (10 writes) | 5,000 | 2,000 | 0.40 |" in text


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("hey") is None,
                    reason="Debian's wrk and hey are not installed (make bench installs them)")
def test_the_load_generators_measure_the_floor(tmp_path: Path) -> None:
    write_local_material(tmp_path, tmp_path / "ca.crt")
    port = free_port()
    floor = subprocess.Popen([sys.executable, "-m", "wfboost_dev.bench.floor", "--port", str(port), "--cert-dir",
                              str(tmp_path)], start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                             "request": {"uid": f"u-{loadgen.COUNTER_TOKEN}"}})
        closed = loadgen.closed_loop(f"https://127.0.0.1:{port}/mutate/pods", body, seconds=2, counter=True)
        assert closed.requests > 100 and closed.errors == 0 and 0 < closed.p50_ms <= closed.p99_ms
        fixed = loadgen.fixed_rate(f"https://127.0.0.1:{port}/mutate/pods", body, 100, seconds=2)
        assert 150 <= fixed.requests <= 210 and fixed.errors == 0
        # 100/s over 4 connections: each pauses 40 ms, so at most 2 s × 100 requests, and well more than half
        paced = loadgen.paced(f"https://127.0.0.1:{port}/mutate/pods", body, 100, connections=4, seconds=2,
                              counter=True)
        assert 100 <= paced.requests <= 210 and paced.errors == 0, paced
    finally:
        os.killpg(floor.pid, signal.SIGTERM)
        floor.wait(10)
