"""Benchmark pieces that need no server: request bodies, ratios, verdicts, option checks."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tritonops.contract.encoding import Tensor
from tritonops.loadtest import payloads
from tritonops.loadtest import run as locust_run
from tritonops.loadtest.bench import BenchConfig, verdicts
from tritonops.loadtest.errors import BenchmarkError
from tritonops.loadtest.report import BenchRow, with_ratios


def _row(
    target: str, protocol: str, rps: float, rows: int = 1, p99: float = 5.0, connections: int = 64, variant: str = ""
) -> BenchRow:
    return BenchRow(target, protocol, rows, connections, int(rps * 10), 0, rps, 1.0, p99, rps * rows, variant=variant)


def test_grpc_body_is_a_framed_model_infer_request() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    framed = payloads.triton_grpc("m", [Tensor("input", "FP32", rows)])
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == len(framed) - 5
    request = service_pb2.ModelInferRequest.FromString(framed[5:])
    assert (request.model_name, request.inputs[0].name, list(request.inputs[0].shape)) == ("m", "input", [2, 3])
    np.testing.assert_array_equal(np.frombuffer(request.raw_input_contents[0], dtype=np.float32), rows.ravel())
    assert [o.name for o in request.outputs] == ["label", "probabilities"]


def test_json_bodies_carry_the_same_rows() -> None:
    rows = np.array([[1.5, 2.0]], dtype=np.float32)
    assert json.loads(payloads.flask_json(rows)) == {"instances": [[1.5, 2.0]]}
    triton = json.loads(payloads.triton_json([Tensor("input", "FP32", rows)]))["inputs"][0]
    mlserver = json.loads(payloads.mlserver_json(rows))["inputs"][0]
    assert triton["data"] == mlserver["data"] == [[1.5, 2.0]] and triton["shape"] == [1, 2]


def test_ratios_and_verdicts_follow_the_measurements() -> None:
    rows = with_ratios(
        [
            _row("onnxruntime", "in-process", 100_000, rows=256),
            _row("onnxruntime", "in-process", 40_000, rows=1),
            _row("triton", "grpc", 6_000, p99=12.0),
            _row("triton", "grpc", 300, rows=256),
            _row("triton", "http", 9_000, connections=8),
            _row("triton", "http", 20_000, p99=6.0),
            _row("triton", "http", 21_000, variant="bare backend"),
            _row("flask", "http", 100),
            _row("mlserver", "http", 400),
        ]
    )
    grpc_single = rows[2]
    assert grpc_single.x_flask == pytest.approx(60.0) and grpc_single.x_mlserver == pytest.approx(15.0)
    assert rows[3].of_limit == pytest.approx(300 * 256 / (100_000 * 256))
    assert rows[0].x_flask is None and rows[0].of_limit == pytest.approx(1.0)
    assert rows[4].x_flask is None and rows[4].x_mlserver is None  # 8 connections: no peer measured at 8
    assert rows[6].name == "triton: bare backend" and rows[6].x_flask == pytest.approx(210.0)
    overhead = {"64 connections": {"drift_counters_cost": 0.12, "of_bare_backend": 0.95}}
    met = {v["target"]: v["met"] for v in verdicts(rows, BenchConfig(), overhead)}
    assert met == {
        "triton grpc req/s >= 60x Flask": True,
        "triton grpc p99 <= 10 ms": False,
        "triton grpc req/s ahead of MLServer": True,
        "triton grpc req/s >= 20x MLServer": False,
        "triton grpc 256 rows/req >= 50% of in-process rows/s": False,
        "triton http req/s at 8 connections >= DESIGN's 8,663 (absolute)": True,
        "triton http req/s >= 60x Flask": True,
        "triton http p99 <= 10 ms": True,
        "triton http req/s ahead of MLServer": True,
        "triton http req/s >= 20x MLServer": True,  # 20,000 / 400 = 50x
        "triton http req/s at 64 connections >= DESIGN's 21,579 (absolute)": False,
        "drift counters cost < 10% of req/s (64 connections)": False,
        "tritonops >= 90% of the bare Python backend's req/s (64 connections)": True,
    }


def test_unknown_target_is_refused() -> None:
    with pytest.raises(BenchmarkError, match=r"--targets: unknown \['torchserve'\]"):
        BenchConfig(targets=("flask", "torchserve"))


def test_a_locust_exit_that_hangs_after_its_summary_is_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locust's exit sometimes hangs in gRPC's gevent shutdown after the run is over; that hang can't be produced on
    demand, so a stand-in process prints the final summary line and then sleeps."""
    monkeypatch.setattr(locust_run, "_EXIT_GRACE_S", 0.5)
    log = tmp_path / "locust.log"
    log.write_text("")
    with log.open("ab") as out:
        hung = subprocess.Popen(
            ["sh", "-c", "echo 'Response time percentiles (approximated)'; exec sleep 300"],
            stdout=out,
            start_new_session=True,
        )
    started = time.monotonic()
    locust_run._wait_for_locust(hung, tmp_path, timeout=60)
    assert time.monotonic() - started < 10
    assert hung.returncode == -signal.SIGKILL


def test_a_locust_run_that_never_finishes_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "locust.log").write_text("still spawning users\n")
    stuck = subprocess.Popen(["sleep", "300"], start_new_session=True)
    with pytest.raises(BenchmarkError, match=r"locust did not finish within 1 s; its log ends:\nstill spawning"):
        locust_run._wait_for_locust(stuck, tmp_path, timeout=1)
    assert stuck.returncode == -signal.SIGKILL


def test_pooled_runs_add_up_and_paired_ratios_are_per_round() -> None:
    from tritonops.loadtest.ab import paired_median, pooled
    from tritonops.loadtest.generators import LoadResult

    def load(requests: int, seconds: float, p99: float, idle: float, others: float) -> LoadResult:
        return LoadResult("wrk", 8, seconds, requests, 1, requests / seconds, 1.0, 2.0, p99, idle, others)

    one = pooled([load(1000, 2.0, 5.0, 0.9, 0.0), load(3000, 2.0, 9.0, 0.5, 0.2), load(2000, 1.0, 7.0, 0.7, 0.1)])
    assert (one.requests, one.seconds, one.failures) == (6000, 5.0, 3)
    assert one.rps == pytest.approx(1200.0) and one.p99_ms == 7.0  # pooled rate; the median round's p99
    assert one.idle_before == 0.5 and one.others_cpu == 0.2  # the worst readings
    # a machine that slowed down halfway: pairing by round keeps the ratio, pooling would not
    assert paired_median([100.0, 50.0, 52.0], [200.0, 100.0, 100.0]) == pytest.approx(0.5)


def test_interleaved_rounds_alternate_their_order_and_a_round_with_stolen_cpu_is_measured_again() -> None:
    from tritonops.loadtest.ab import interleaved
    from tritonops.loadtest.generators import LoadResult

    calls: list[tuple[str, int]] = []
    stolen = iter([0.0, 0.0, 0.3, 0.0] + [0.0] * 20)  # the second round's first run lost 30% to the hypervisor

    def measure(url: str, connections: int) -> LoadResult:
        calls.append((url, connections))
        return LoadResult("wrk", connections, 1.0, 100, 0, 100.0 * len(calls), 1.0, 1.0, 1.0, 1.0, steal=next(stolen))

    result = interleaved({"A": "a", "B": "b"}, [8], 3, measure, max_steal=0.05)
    assert [url for url, _ in calls] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # A B | B A (dropped) | A B | B A
    assert result.repeated == {8: 1}
    assert [load.rps for load in result.runs[("A", 8)]] == [100.0, 500.0, 800.0]  # the dropped round is not kept
    assert [load.rps for load in result.runs[("B", 8)]] == [200.0, 600.0, 700.0]

    calls.clear()
    stolen = iter([0.5] * 20)  # every round stolen from: after as many extra rounds as asked for, keep what comes
    capped = interleaved({"A": "a", "B": "b"}, [8], 2, measure, max_steal=0.05)
    assert capped.repeated == {8: 2} and len(calls) == 8 and len(capped.runs[("A", 8)]) == 2
