"""``tritonops.loadtest.bench`` in a tiny configuration: every target really measured, ratios derived from those
numbers.

Absolute times are never asserted (the machine is shared and noisy); only that each number comes from a real
run (requests counted, no failures), that the ratios are the quotients of those measurements, and orderings
that hold by orders of magnitude (Triton ahead of the seed-style Flask server, batching ahead of single rows).
MLServer is left out here: its virtualenv takes minutes to build; ``make bench`` runs it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tritonops.loadtest.bench import SETTINGS_DEFAULT, SETTINGS_GLIBC, SETTINGS_SUMMARIES, BenchConfig, run
from tritonops.loadtest.capture import CAPTURE_01, CAPTURE_OFF, CAPTURE_OFF_COPY
from tritonops.loadtest.routing import AS_CONVERTED, SHADOW_1, WEIGHT_0, WEIGHT_02, WEIGHT_02_BLS
from tritonops.loadtest.variants import BARE, NO_COUNTERS, TRITONOPS

pytestmark = pytest.mark.perf

ROUTING = (AS_CONVERTED, WEIGHT_0, WEIGHT_02, WEIGHT_02_BLS, SHADOW_1)


def test_tiny_bench_measures_every_target_and_derives_ratios(tmp_path: Path) -> None:
    config = BenchConfig(
        duration=1.0,
        connections=8,
        targets=("inprocess", "triton-http", "triton-grpc", "overhead", "settings", "routing", "capture", "flask"),
        out=tmp_path,
        inprocess_seconds=0.3,
        batch_rows=64,
        low_connections=4,
        ab_rounds=2,
        ab_seconds=1.0,
    )
    rows, verdicts, json_path = run(config)

    by_key = {(r.target, r.variant, r.protocol, r.rows_per_request, r.connections): r for r in rows}
    single = [("triton", v, "http", 1, c) for v in (TRITONOPS, NO_COUNTERS, BARE) for c in (4, 8)]
    single += [("triton", v, "http", 1, 8) for v in (SETTINGS_DEFAULT, SETTINGS_SUMMARIES, SETTINGS_GLIBC)]
    single += [("triton", v, "http", 1, c) for v in ROUTING for c in (4, 8)]
    single += [("triton", v, "http", 1, c) for v in (CAPTURE_OFF, CAPTURE_01, CAPTURE_OFF_COPY) for c in (4, 8)]
    assert set(by_key) == {
        ("onnxruntime", "", "in-process", 1, 0),
        ("onnxruntime", "", "in-process", 32, 0),
        ("onnxruntime", "", "in-process", 256, 0),
        ("triton", "", "http", 1, 4),
        ("triton", "", "http", 1, 8),
        ("triton", "", "http", 64, 8),
        ("triton", "", "grpc", 1, 8),
        ("triton", "", "grpc", 64, 8),
        ("flask", "", "http", 1, 8),
        *single,
    }
    assert len(rows) == len(by_key)
    for row in rows:
        assert row.requests > 0 and row.failures == 0, row
        assert row.p50_ms <= row.p99_ms, row

    flask = by_key[("flask", "", "http", 1, 8)]
    limit = max(r.rows_per_s for r in rows if r.protocol == "in-process")
    for row in rows:
        assert row.of_limit == pytest.approx(row.rows_per_s / limit)
        if row.protocol != "in-process":
            assert row.rows_per_s == pytest.approx(row.rps * row.rows_per_request)
            if row.connections == flask.connections:  # a ratio only between loads at the same concurrency
                assert row.x_flask == pytest.approx(row.rps / flask.rps)
            else:
                assert row.x_flask is None
    assert by_key[("triton", "", "grpc", 1, 8)].x_flask > 3, "Triton should be far ahead of Flask + joblib"
    assert (
        by_key[("onnxruntime", "", "in-process", 256, 0)].rows_per_s
        > by_key[("onnxruntime", "", "in-process", 1, 0)].rows_per_s
    )

    saved = json.loads(json_path.read_text())
    assert [r["rps"] for r in saved["results"]] == [r.rps for r in rows]
    assert {v["target"] for v in saved["targets"]} == {v["target"] for v in verdicts}
    assert "triton grpc req/s >= 60x Flask" in {v["target"] for v in verdicts}
    # the overhead verdicts are the medians of each round's paired ratios, and the pooled rows hold those rounds
    overhead = saved["meta"]["overhead"]
    assert set(overhead) == {"4 connections", "8 connections"}
    for level, measured in overhead.items():
        rounds = measured["rounds_rps"]
        on, off, bare = (rounds[v] for v in (TRITONOPS, NO_COUNTERS, BARE))
        assert len(on) == len(off) == len(bare) == 2
        assert measured["drift_counters_cost"] == pytest.approx(
            1 - statistics.median(a / b for a, b in zip(on, off, strict=True))
        )
        assert measured["of_bare_backend"] == pytest.approx(
            statistics.median(a / b for a, b in zip(on, bare, strict=True))
        )
        connections = int(level.split()[0])
        for variant in (TRITONOPS, NO_COUNTERS, BARE):
            pooled = by_key[("triton", variant, "http", 1, connections)].rps
            assert min(rounds[variant]) <= pooled <= max(rounds[variant])
        assert f"drift counters cost < 10% of req/s ({level})" in {v["target"] for v in verdicts}
    (settings,) = saved["meta"]["settings"].values()  # the full connection count only
    rounds = settings["rounds_rps"]
    default, summaries, glibc = (rounds[v] for v in (SETTINGS_DEFAULT, SETTINGS_SUMMARIES, SETTINGS_GLIBC))
    assert settings["latency_summaries_cost"] == pytest.approx(
        1 - statistics.median(a / b for a, b in zip(summaries, default, strict=True))
    )
    assert settings["system_malloc_cost"] == pytest.approx(
        1 - statistics.median(a / b for a, b in zip(glibc, default, strict=True))
    )
    routing = saved["meta"]["routing"]
    assert set(routing) == {"4 connections", "8 connections"}
    for level, measured in routing.items():
        rounds = measured["rounds_rps"]
        plain, zero, split, _, shadow = (rounds[v] for v in ROUTING)
        assert measured["weight0_of_as_converted"] == pytest.approx(
            statistics.median(a / b for a, b in zip(zero, plain, strict=True))
        )
        assert measured["weight02_of_weight0"] == pytest.approx(
            statistics.median(a / b for a, b in zip(split, zero, strict=True))
        )
        assert measured["shadow_of_weight0"] == pytest.approx(
            statistics.median(a / b for a, b in zip(shadow, zero, strict=True))
        )
        assert f"shadow at share 1.0 >= 80% of weight 0 ({level})" in {v["target"] for v in verdicts}
    assert "shadow adds <= 2 ms to p99 at 8 connections" in {v["target"] for v in verdicts}
    capture = saved["meta"]["capture"]
    assert set(capture) == {"4 connections", "8 connections"}
    for level, measured in capture.items():
        rounds = measured["rounds_rps"]
        assert measured["capture_of_off"] == pytest.approx(
            statistics.median(a / b for a, b in zip(rounds[CAPTURE_01], rounds[CAPTURE_OFF], strict=True))
        )
        assert measured["copy_of_off"] == pytest.approx(  # the A/A ratio: the noise floor, measured alongside
            statistics.median(a / b for a, b in zip(rounds[CAPTURE_OFF_COPY], rounds[CAPTURE_OFF], strict=True))
        )
        assert f"capture at share 0.1 >= 95% of capture off ({level})" in {v["target"] for v in verdicts}
    # the capturing model really captured about a tenth of the requests it answered (Triton's count: the kept
    # rounds, the pre-flight request and any round measured again for stolen CPU)
    spooled = saved["meta"]["capture_spooled"]
    kept_requests = sum(by_key[("triton", CAPTURE_01, "http", 1, c)].requests for c in (4, 8))
    assert spooled["requests"] >= kept_requests + 1
    share = spooled["rows"] / spooled["requests"]
    assert 0.05 < share < 0.15, spooled
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "bench.md").read_text()
    assert f"| triton | grpc | 1 | 8 | {by_key[('triton', '', 'grpc', 1, 8)].requests:,} | 0 |" in table
    assert f"| triton: {BARE} | http | 1 | 4 |" in table
