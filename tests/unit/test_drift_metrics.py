"""Metrics reader: parse Triton-format text, windows from counter deltas, per-version numbers, history."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonops.contract.names import base_model
from tritonops.control_plane.errors import MetricsError
from tritonops.control_plane.metrics import (
    SnapshotStore,
    VersionStats,
    combine_stats,
    compact_counters,
    expand_counters,
    feature_bin_counts,
    histogram_quantile,
    merge_deltas,
    parse_metrics,
    prediction_counts,
    rows_scored,
    version_stats,
    window,
)


def exposition(
    success: int,
    failure: int,
    invalid: int,
    bins: tuple[int, int, int],
    *,
    model: str = "rf",
    version: str = "2",
    p99_us: float = 1800.0,
    summary: bool = True,
) -> str:
    """Text in the exact shape Triton 2.51 and our backend print (families from docs/contracts.md)."""
    base = base_model(model)
    lines = [
        "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
        "# TYPE nv_inference_request_success counter",
        f'nv_inference_request_success{{model="{model}",version="{version}"}} {success}',
        "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes",
        "# TYPE nv_inference_request_failure counter",
        f'nv_inference_request_failure{{model="{model}",reason="BACKEND",version="{version}"}} {failure}',
        f'nv_inference_request_failure{{model="{model}",reason="REJECTED",version="{version}"}} 0',
        "# TYPE nv_inference_count counter",
        f'nv_inference_count{{model="{model}",version="{version}"}} {success * 4}',
        "# TYPE nv_inference_exec_count counter",
        f'nv_inference_exec_count{{model="{model}",version="{version}"}} {success}',
        "# TYPE nv_inference_queue_duration_us counter",
        f'nv_inference_queue_duration_us{{model="{model}",version="{version}"}} {success * 100}',
        "# TYPE nv_inference_compute_infer_duration_us counter",
        f'nv_inference_compute_infer_duration_us{{model="{model}",version="{version}"}} {success * 900}',
        "# TYPE nv_inference_compute_input_duration_us counter",
        f'nv_inference_compute_input_duration_us{{model="{model}",version="{version}"}} {success * 50}',
        "# TYPE nv_inference_compute_output_duration_us counter",
        f'nv_inference_compute_output_duration_us{{model="{model}",version="{version}"}} {success * 50}',
        "# TYPE nv_cache_num_hits_per_model counter",
        f'nv_cache_num_hits_per_model{{model="{model}",version="{version}"}} 0',
        "# TYPE nv_inference_pending_request_count gauge",
        f'nv_inference_pending_request_count{{model="{model}",version="{version}"}} 3',
        "# TYPE tritonops_invalid_requests_total counter",
        f'tritonops_invalid_requests_total{{model="{base}",reason="nan",version="{version}"}} {invalid}',
        f'tritonops_invalid_requests_total{{model="{base}",reason="shape",version="{version}"}} 0',
        "# TYPE tritonops_feature_bin_total counter",
        *(
            f'tritonops_feature_bin_total{{bin="{b}",feature="x",model="{base}",version="{version}"}} {n}'
            for b, n in zip(("0", "1", "nan"), bins, strict=True)
        ),
        "# TYPE tritonops_prediction_total counter",
        f'tritonops_prediction_total{{class="yes",model="{base}",version="{version}"}} {sum(bins) - 5}',
        f'tritonops_prediction_total{{class="no",model="{base}",version="{version}"}} 5',
        "# TYPE tritonops_rows_total counter",
        f'tritonops_rows_total{{model="{base}",version="{version}"}} {sum(bins)}',
        "# TYPE tritonops_request_duration_seconds histogram",
        f'tritonops_request_duration_seconds_bucket{{model="{base}",version="{version}",le="0.001"}} {success // 2}',
        f'tritonops_request_duration_seconds_bucket{{model="{base}",version="{version}",le="0.01"}} {success}',
        f'tritonops_request_duration_seconds_bucket{{model="{base}",version="{version}",le="+Inf"}} {success}',
        f'tritonops_request_duration_seconds_count{{model="{base}",version="{version}"}} {success}',
        f'tritonops_request_duration_seconds_sum{{model="{base}",version="{version}"}} 0.5',
    ]
    if summary:
        lines += [
            "# TYPE nv_inference_request_summary_us summary",
            f'nv_inference_request_summary_us_count{{model="{model}",version="{version}"}} {success}',
            f'nv_inference_request_summary_us_sum{{model="{model}",version="{version}"}} {success * 1000}',
            f'nv_inference_request_summary_us{{model="{model}",version="{version}",quantile="0.5"}} 900',
            f'nv_inference_request_summary_us{{model="{model}",version="{version}",quantile="0.99"}} {p99_us}',
        ]
    return "\n".join(lines) + "\n"


def test_window_numbers_come_from_counter_increases() -> None:
    before = parse_metrics(exposition(100, 0, 0, (10, 10, 0)), taken_at=1000.0)
    after = parse_metrics(exposition(400, 6, 9, (160, 40, 10)), taken_at=1030.0)
    stats = version_stats(window(before, after))[("rf", "2")]
    assert stats.seconds == 30.0
    assert (stats.success, stats.failure, stats.invalid) == (300.0, 6.0, 9.0)
    assert stats.request_rate == pytest.approx(306 / 30)
    assert stats.error_rate == pytest.approx(15 / 306)
    assert stats.avg_batch_size == pytest.approx(4.0)
    assert stats.mean_queue_ms == pytest.approx(300 * 100 / 306 / 1000)
    assert stats.mean_compute_ms == pytest.approx(300 * 1000 / 306 / 1000)
    assert stats.cache_hit_rate is None
    assert stats.p99_ms == pytest.approx(1.8)
    assert stats.latency_source == "triton summary"


def test_without_triton_summary_latency_comes_from_the_backend_histogram_of_the_window() -> None:
    before = parse_metrics(exposition(100, 0, 0, (1, 1, 1), summary=False), taken_at=0.0)
    after = parse_metrics(exposition(300, 0, 0, (1, 1, 1), summary=False), taken_at=10.0)
    stats = version_stats(window(before, after))[("rf", "2")]
    # window buckets: 100 of 200 requests <= 1 ms, all <= 10 ms; p99 at rank 198 inside (1 ms, 10 ms]
    assert stats.latency_source == "backend histogram"
    assert stats.p99_ms == pytest.approx(1.0 + 9.0 * (198 - 100) / 100)


def test_a_counter_that_went_down_was_reset_and_counts_from_zero() -> None:
    before = parse_metrics(exposition(500, 0, 0, (100, 100, 0)), taken_at=0.0)
    after = parse_metrics(exposition(40, 0, 0, (30, 10, 0)), taken_at=10.0)
    win = window(before, after)
    assert version_stats(win)[("rf", "2")].success == 40.0
    assert feature_bin_counts(win.delta, "rf", 2) == {"x": {"0": 30.0, "1": 10.0, "nan": 0.0}}


def test_no_earlier_snapshot_means_since_the_version_was_loaded() -> None:
    after = parse_metrics(exposition(50, 0, 2, (20, 25, 5)), taken_at=10.0)
    win = window(None, after)
    assert win.seconds is None
    assert version_stats(win)[("rf", "2")].request_rate is None
    assert feature_bin_counts(win.delta, "rf", "2") == {"x": {"0": 20.0, "1": 25.0, "nan": 5.0}}
    assert prediction_counts(win.delta, "rf", 2) == {"yes": 45.0, "no": 5.0}
    assert rows_scored(win.delta, "rf", 2) == 50.0


def test_canary_alias_is_matched_with_the_backend_counters_of_its_version() -> None:
    text = exposition(100, 0, 7, (1, 1, 1), model="rf__canary", version="3")
    stats = version_stats(window(None, parse_metrics(text)))
    assert list(stats) == [("rf__canary", "3")]
    assert stats[("rf__canary", "3")].invalid == 7.0
    assert base_model("rf__canary") == "rf" and base_model("rf") == "rf"


def test_fleet_adds_counts_and_keeps_the_worst_latency() -> None:
    a = version_stats(window(None, parse_metrics(exposition(100, 1, 0, (1, 1, 1), p99_us=2000))))
    b = version_stats(window(None, parse_metrics(exposition(300, 3, 0, (1, 1, 1), p99_us=5000))))
    fleet = combine_stats([a, b])[("rf", "2")]
    assert (fleet.success, fleet.failure) == (400.0, 4.0)
    assert fleet.p99_ms == pytest.approx(5.0)
    merged = merge_deltas(
        [window(None, parse_metrics(exposition(1, 0, 0, b))).delta for b in ((1, 2, 3), (10, 20, 30))]
    )
    assert feature_bin_counts(merged, "rf", 2) == {"x": {"0": 11.0, "1": 22.0, "nan": 33.0}}


def test_histogram_quantile_matches_promql_rules() -> None:
    buckets = [(0.1, 10.0), (0.5, 60.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.99, [(0.1, 10.0), (float("inf"), 20.0)]) == pytest.approx(0.1)
    assert histogram_quantile(0.99, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_text_that_is_not_prometheus_format_is_refused_naming_the_source() -> None:
    with pytest.raises(MetricsError, match=r"metrics http://h:1/metrics: not Prometheus text format"):
        parse_metrics('nv_inference_count{model="a"} not-a-number\n', source="http://h:1/metrics")


def test_snapshot_history_round_trips_and_looks_back(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SnapshotStore(db) as store:
        for t, n in ((100.0, 10), (200.0, 20), (300.0, 30)):
            store.record("h:8002", parse_metrics(exposition(n, 0, 0, (n, 0, 0)), taken_at=t))
        store.record("other:8002", parse_metrics(exposition(999, 0, 0, (1, 0, 0)), taken_at=250.0))
        found = store.at_or_before("h:8002", 250.0)
        assert found is not None and found.taken_at == 200.0
        assert found.total("nv_inference_request_success_total", model="rf") == 20.0
        assert "nv_inference_request_success_total" in found.counters
        assert not found.has("nv_inference_pending_request_count", model="rf")  # a gauge: samples keep counters
        assert store.at_or_before("h:8002", 99.0) is None
        oldest = store.oldest("h:8002")
        assert oldest is not None and oldest.taken_at == 100.0
        assert store.prune(before=250.0) == 2
        again = store.oldest("h:8002")
        assert again is not None and again.taken_at == 300.0
    with SnapshotStore(db, keep_seconds=1000.0) as store:  # recording forgets what is older than keep_seconds
        store.record("h:8002", parse_metrics(exposition(40, 0, 0, (1, 0, 0)), taken_at=1250.0))
        kept = store.oldest("h:8002")
        assert kept is not None and kept.taken_at == 300.0
        store.record("h:8002", parse_metrics(exposition(50, 0, 0, (1, 0, 0)), taken_at=1400.0))
        kept = store.oldest("h:8002")
        assert kept is not None and kept.taken_at == 1250.0


def test_counter_samples_are_compact_and_spaced(tmp_path: Path) -> None:
    snapshot = parse_metrics(exposition(20, 0, 0, (20, 0, 0)), taken_at=10.0)
    blob = compact_counters(snapshot)
    assert len(blob) < len(snapshot.restricted().to_json()) / 3
    again = expand_counters(blob)
    for name in snapshot.restricted().counters:
        for labels, value in snapshot.series[name].items():
            assert again.series.get(name, {}).get(labels, 0.0) == value  # zero series left out read back as 0
    assert all(0.0 not in series.values() for series in again.series.values())
    with SnapshotStore(tmp_path / "state.db", keep_seconds=100.0, min_spacing=5.0) as store:
        kept = [
            store.record("h:8002", parse_metrics(exposition(n, 0, 0, (n, 0, 0)), taken_at=float(n)))
            for n in range(1, 13)
        ]
        assert kept == [n in (1, 6, 11) for n in range(1, 13)]
        assert store.size()[0] == 3


def _with_cache_counters(text: str, ours: tuple[int, int] | None, triton: tuple[int, int] | None) -> str:
    """``text`` plus the backend's cache counters (labelled by manifest name) and/or Triton's per-model ones."""
    lines = [line for line in text.splitlines() if "nv_cache_num_hits_per_model" not in line]
    if ours is not None:
        lines += [
            "# TYPE tritonops_cache_hits_total counter",
            f'tritonops_cache_hits_total{{model="rf",version="3"}} {ours[0]}',
            "# TYPE tritonops_cache_misses_total counter",
            f'tritonops_cache_misses_total{{model="rf",version="3"}} {ours[1]}',
        ]
    if triton is not None:
        lines += [
            "# TYPE nv_cache_num_hits_per_model counter",
            f'nv_cache_num_hits_per_model{{model="rf__canary",version="3"}} {triton[0]}',
            "# TYPE nv_cache_num_misses_per_model counter",
            f'nv_cache_num_misses_per_model{{model="rf__canary",version="3"}} {triton[1]}',
        ]
    return "\n".join(lines) + "\n"


def _canary_stats(ours: tuple[tuple[int, int], tuple[int, int]] | None, triton: tuple[int, int] | None) -> VersionStats:
    before = _with_cache_counters(
        exposition(100, 0, 0, (1, 1, 1), model="rf__canary", version="3"), ours[0] if ours else None, (0, 0)
    )
    after = _with_cache_counters(
        exposition(200, 0, 0, (1, 1, 1), model="rf__canary", version="3"), ours[1] if ours else None, triton
    )
    win = window(parse_metrics(before, taken_at=0.0), parse_metrics(after, taken_at=10.0))
    return version_stats(win)[("rf__canary", "3")]


def test_cache_hit_rate_prefers_the_backends_counters_by_manifest_name() -> None:
    stats = _canary_stats(((10, 10), (70, 30)), triton=(0, 0))
    assert (stats.cache_hits, stats.cache_misses) == (60.0, 20.0)
    assert stats.cache_hit_rate == pytest.approx(0.75)
    # our cache hits still ran through Triton's compute path: every request counts for the mean compute time
    assert stats.compute_skipped == 0.0
    assert stats.mean_compute_ms == pytest.approx(100 * 1000 / 100 / 1000)


def test_cache_hit_rate_falls_back_to_tritons_response_cache_counters() -> None:
    stats = _canary_stats(None, triton=(40, 60))
    assert (stats.cache_hits, stats.cache_misses) == (40.0, 60.0)
    assert stats.cache_hit_rate == pytest.approx(0.4)
    assert stats.compute_skipped == 40.0
    assert stats.mean_compute_ms == pytest.approx(100 * 1000 / 60 / 1000)
