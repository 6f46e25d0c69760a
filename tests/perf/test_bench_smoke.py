"""``loadtest.bench`` in a tiny configuration: every target really measured, ratios derived from those numbers.

Absolute times are never asserted (the machine is shared and noisy); only that each number comes from a real
run (requests counted, no failures), that the ratios are the quotients of those measurements, and orderings
that hold by orders of magnitude (Triton ahead of the seed-style Flask server, batching ahead of single rows).
MLServer is left out here: its virtualenv takes minutes to build; ``make bench`` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.bench import BenchConfig, run

pytestmark = pytest.mark.perf


def test_tiny_bench_measures_every_target_and_derives_ratios(tmp_path: Path) -> None:
    config = BenchConfig(
        duration=1.0,
        connections=8,
        targets=("inprocess", "triton-http", "triton-grpc", "flask"),
        out=tmp_path,
        inprocess_seconds=0.3,
        batch_rows=64,
    )
    rows, verdicts, json_path = run(config)

    by_key = {(r.target, r.protocol, r.rows_per_request): r for r in rows}
    assert set(by_key) == {
        ("onnxruntime", "in-process", 1),
        ("onnxruntime", "in-process", 32),
        ("onnxruntime", "in-process", 256),
        ("triton", "http", 1),
        ("triton", "http", 64),
        ("triton", "grpc", 1),
        ("triton", "grpc", 64),
        ("flask", "http", 1),
    }
    for row in rows:
        assert row.requests > 0 and row.failures == 0, row
        assert row.p50_ms <= row.p99_ms, row

    flask = by_key[("flask", "http", 1)]
    limit = max(r.rows_per_s for r in rows if r.protocol == "in-process")
    for row in rows:
        assert row.of_limit == pytest.approx(row.rows_per_s / limit)
        if row.protocol != "in-process":
            assert row.x_flask == pytest.approx(row.rps / flask.rps)
            assert row.rows_per_s == pytest.approx(row.rps * row.rows_per_request)
    assert by_key[("triton", "grpc", 1)].x_flask > 3, "Triton should be far ahead of Flask + joblib"
    assert by_key[("onnxruntime", "in-process", 256)].rows_per_s > by_key[("onnxruntime", "in-process", 1)].rows_per_s

    saved = json.loads(json_path.read_text())
    assert [r["rps"] for r in saved["results"]] == [r.rps for r in rows]
    assert {v["target"] for v in saved["targets"]} == {v["target"] for v in verdicts}
    assert "triton grpc req/s >= 60x Flask" in {v["target"] for v in verdicts}
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "bench.md").read_text()
    assert f"| triton | grpc | 1 | 8 | {by_key[('triton', 'grpc', 1)].requests:,} | 0 |" in table
