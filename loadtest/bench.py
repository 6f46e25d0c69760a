"""Side-by-side benchmark: in-process ONNX Runtime, Triton (HTTP + gRPC), Flask + joblib, MLServer.

``python -m tritonops.loadtest.bench`` (``make bench``) trains one model (RandomForest, 50 trees, depth 8, 20 features),
converts it with tritonops, then puts each server under the same load from a real generator (``wrk`` for JSON
over HTTP, ``h2load`` for gRPC) at the same number of connections, one target at a time, on this machine.
Prints a table (req/s, p50, p99, rows/s, ratio to Flask and to the in-process limit), writes ``bench.json``
and ``bench.png`` to ``--out``, and says which DESIGN targets were met. The ``overhead`` target prices our
backend on the same server: tritonops vs the same model with drift counters off vs a bare Python-backend model, in
interleaved rounds at a low and at the full connection count; the ``settings`` target prices the server's two
performance settings: the default server vs one with Triton's latency summaries vs one on glibc's malloc; the
``routing`` target prices the server-side canary split and shadow mirror (``tritonops.loadtest.routing``); the
``capture`` target prices row capture at share 0.1 against the same model with capture off
(``tritonops.loadtest.capture``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import numpy.typing as npt
import requests
import tritonclient.grpc as grpcclient
from rich.console import Console
from tritonclient.grpc import service_pb2

from tritonops.contract.encoding import Tensor, encode_rows
from tritonops.contract.manifest import Feature
from tritonops.loadtest import payloads
from tritonops.loadtest.ab import Interleaved, interleaved, paired_median, pooled, rounds_rps
from tritonops.loadtest.capture import CAPTURE_01, CAPTURE_OFF, CAPTURE_OFF_COPY, load_capture_models, spooled_rows
from tritonops.loadtest.errors import BenchmarkError
from tritonops.loadtest.generators import LoadResult, OtherLoad, cpu_idle_share, run_h2load, run_wrk
from tritonops.loadtest.inprocess import measure
from tritonops.loadtest.peers import flask_baseline, mlserver_peer
from tritonops.loadtest.report import BenchRow, markdown, render, with_ratios, write_chart, write_json
from tritonops.loadtest.routing import AS_CONVERTED, SHADOW_1, WEIGHT_0, WEIGHT_02, WEIGHT_02_BLS, load_routing_models
from tritonops.loadtest.variants import BARE, NO_COUNTERS, TRITONOPS, Variant, write_variants
from tritonops.serving.capture import OPEN_SUFFIX
from tritonops.serving.triton import ServerOptions, TritonServer

MODEL = "bench"
ALL_TARGETS = (
    "inprocess", "triton-http", "triton-grpc", "overhead", "settings", "routing", "capture", "flask", "mlserver"
)  # fmt: skip
INPROCESS_BATCHES = (1, 32, 256)
DESIGN_BARE_RPS = {8: 8_663, 64: 21_579}
"""DESIGN's figure for a bare Python-backend model on a machine like this one (another day): req/s by connections."""

console = Console(highlight=False, width=160)


@dataclass(frozen=True)
class BenchConfig:
    """What to run and for how long."""

    duration: float = 10.0
    connections: int = 64
    targets: tuple[str, ...] = ALL_TARGETS
    out: Path = Path("runs/bench")
    inprocess_seconds: float = 3.0
    batch_rows: int = 256
    generator_threads: int = 1
    n_features: int = 20
    low_connections: int = 8
    """A second single-row HTTP load at this many connections (0 = none)."""
    ab_rounds: int = 3
    """Interleaved rounds of the overhead and settings targets."""
    ab_seconds: float = 3.0
    max_steal: float = 0.05
    """An interleaved round with a run that saw more of the CPU stolen by the hypervisor is measured again."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(ALL_TARGETS))
        if unknown:
            raise BenchmarkError(f"--targets: unknown {unknown}; choose from {list(ALL_TARGETS)}")
        if self.duration < 1 or self.connections < 1 or self.batch_rows < 1:
            raise BenchmarkError(
                f"--duration (>= 1 s), --connections and --batch-rows (>= 1) got "
                f"{self.duration}, {self.connections}, {self.batch_rows}"
            )
        if not 0.0 <= self.max_steal <= 1.0:
            raise BenchmarkError(f"--max-steal: expected a share from 0 to 1, got {self.max_steal}")
        if self.low_connections < 0 or self.ab_rounds < 1 or self.ab_seconds < 1:
            raise BenchmarkError(
                f"--low-connections (>= 0), --ab-rounds (>= 1) and --ab-seconds (>= 1 s) got "
                f"{self.low_connections}, {self.ab_rounds}, {self.ab_seconds}"
            )

    @property
    def connection_levels(self) -> tuple[int, ...]:
        """Connection counts of the single-row HTTP loads: the low one (if any), then the full one."""
        low = (self.low_connections,) if 0 < self.low_connections < self.connections else ()
        return (*low, self.connections)


@dataclass(frozen=True)
class BenchModel:
    onnx_path: Path
    joblib_path: Path
    repository: Path
    rows: npt.NDArray[np.float32]
    features: tuple[Feature, ...]
    variants: tuple[Variant, ...] = ()
    """The overhead target's models (``tritonops.loadtest.variants``); empty without it."""

    def tensors(self, rows: npt.NDArray[np.float32]) -> list[Tensor]:
        """``rows`` as the model's Triton input tensors (the contract's encoder)."""
        return encode_rows(MODEL, self.features, rows)


def prepare_model(work: Path, n_features: int, variants: bool = False) -> BenchModel:
    """Train the bench model, convert it into a fresh repository (with its variants), pickle it for the peers."""
    from examples.train import train_numeric_pipeline
    from tritonops.converters.convert import convert_sklearn
    from tritonops.converters.repository import publish_live

    trained = train_numeric_pipeline(n_rows=600, n_features=n_features, seed=0)
    repository = work / "model_repository"
    repository.mkdir(parents=True)
    written = convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository)
    publish_live(repository, MODEL, written.version)  # served from disk: as after a promote
    joblib_path = work / "model.joblib"
    joblib.dump(trained.model, joblib_path)
    rows = trained.frame.to_numpy(dtype=np.float32)
    made = write_variants(trained.model, trained.frame, repository, MODEL) if variants else ()
    features = tuple(written.manifest.features)
    return BenchModel(written.path / "model.onnx", joblib_path, repository, rows, features, made)


def _batch(rows: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(np.tile(rows, (-(-n // len(rows)), 1))[:n])


def _row(target: str, protocol: str, rows_per_request: int, load: LoadResult, variant: str = "") -> BenchRow:
    return BenchRow(
        target=target,
        variant=variant,
        protocol=protocol,
        rows_per_request=rows_per_request,
        connections=load.connections,
        requests=load.requests,
        failures=load.failures,
        rps=load.rps,
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        rows_per_s=load.rps * rows_per_request,
        idle_before=load.idle_before,
        others_cpu=load.others_cpu,
        steal=load.steal,
    )


def _summary(load: LoadResult) -> str:
    return (
        f"{load.rps:,.0f} req/s, p99 {load.p99_ms:.2f} ms "
        f"(CPU idle before: {100 * load.idle_before:.0f}%, others' CPU during: {100 * load.others_cpu:.0f}%, "
        f"stolen by the hypervisor: {100 * load.steal:.0f}%)"
    )


def _check_http(url: str, body: str, expect_key: str) -> None:
    """One request before the load: the body must be answered with a 200 carrying ``expect_key``."""
    answer = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    if answer.status_code != 200 or expect_key not in answer.text:
        raise BenchmarkError(f"pre-flight POST {url} answered {answer.status_code}: {answer.text[:300]}")


def _check_grpc(target: str, framed: bytes, rows: int) -> None:
    """Send the exact gRPC body h2load will send; it must come back with ``rows`` labels."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(payloads.GRPC_INFER_PATH)
        raw = call(framed[5:], timeout=10)
    response = service_pb2.ModelInferResponse.FromString(raw)
    names = [output.name for output in response.outputs]
    if "label" not in names or response.outputs[names.index("label")].shape[0] != rows:
        raise BenchmarkError(f"pre-flight gRPC ModelInfer answered outputs {names} for {rows} rows")


@dataclass(frozen=True)
class TritonCounters:
    """Triton's own statistics for one model (cumulative)."""

    requests: int
    executions: int
    queue_ns: int
    compute_ns: int

    @classmethod
    def read(cls, grpc_url: str, model: str = MODEL) -> TritonCounters:
        with grpcclient.InferenceServerClient(grpc_url) as client:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
        total = {"requests": 0, "executions": 0, "queue_ns": 0, "compute_ns": 0}
        for entry in stats:
            inference = entry["inference_stats"]
            total["requests"] += int(inference["success"].get("count", 0))
            total["executions"] += int(entry.get("execution_count", 0))
            total["queue_ns"] += int(inference["queue"].get("ns", 0))
            total["compute_ns"] += sum(
                int(inference[key].get("ns", 0)) for key in ("compute_input", "compute_infer", "compute_output")
            )
        return cls(**total)

    def since(self, before: TritonCounters) -> dict[str, float]:
        """Server-side view of one run: requests, average dynamic batch, queue wait and backend time.

        Triton books a batch's whole compute time on every request in it, so compute time per request is the
        (request-weighted) duration of a batch; divided by the average batch it approximates the cost of one.
        """
        requests_ = max(1, self.requests - before.requests)
        batch = requests_ / max(1, self.executions - before.executions)
        batch_us = (self.compute_ns - before.compute_ns) / requests_ / 1000
        return {
            "requests": self.requests - before.requests,
            "avg_batch_requests": round(batch, 1),
            "queue_us_per_request": round((self.queue_ns - before.queue_ns) / requests_ / 1000, 1),
            "backend_us_per_batch": round(batch_us, 1),
            "backend_us_per_request": round(batch_us / batch, 1),
        }


def bench_inprocess(model: BenchModel, config: BenchConfig) -> list[BenchRow]:
    rows = []
    for batch in INPROCESS_BATCHES:
        idle = cpu_idle_share()
        with OtherLoad() as others:
            result = measure(model.onnx_path, model.rows, batch, config.inprocess_seconds)
        console.print(f"  in-process ORT batch {batch}: {result.rows_per_s:,.0f} rows/s")
        rows.append(
            BenchRow(
                "onnxruntime", "in-process", batch, 0, result.calls, 0,
                result.calls / result.seconds, result.p50_ms, result.p99_ms, result.rows_per_s, idle, others.share,
                others.steal,
            )
        )  # fmt: skip
    return rows


def bench_triton(model: BenchModel, config: BenchConfig, work: Path) -> tuple[list[BenchRow], dict[str, Any]]:
    """Triton over HTTP (wrk) and gRPC (h2load), single rows and batches, then the overhead and settings rounds.

    Returns the rows and the meta data: Triton's own per-run statistics, the overhead and settings summaries.
    """
    rows: list[BenchRow] = []
    server_side: dict[str, dict[str, float]] = {}
    loaded = [MODEL, *(v.model for v in model.variants if v.model != MODEL)]
    options = ServerOptions(model_repository=model.repository, load_models=loaded, work_dir=work / "triton")
    with TritonServer(options) as server:
        for n in (1, config.batch_rows):
            data = _batch(model.rows, n)
            if "triton-http" in config.targets:
                url = f"http://{server.http_url}/v2/models/{MODEL}/infer"
                body = payloads.triton_json(model.tensors(data))
                _check_http(url, body, '"label"')
                for connections in config.connection_levels if n == 1 else (config.connections,):
                    before = TritonCounters.read(server.grpc_url)
                    load = run_wrk(url, body, connections, config.duration, config.generator_threads)
                    key = f"http {n} rows/req" + ("" if connections == config.connections else f", {connections} conns")
                    server_side[key] = TritonCounters.read(server.grpc_url).since(before)
                    rows.append(_row("triton", "http", n, load))
                    console.print(f"  triton http {n} row(s)/req, {connections} connections: {_summary(load)}")
            if "triton-grpc" in config.targets:
                framed = payloads.triton_grpc(MODEL, model.tensors(data))
                _check_grpc(server.grpc_url, framed, n)
                before = TritonCounters.read(server.grpc_url)
                load = run_h2load(
                    f"http://{server.grpc_url}{payloads.GRPC_INFER_PATH}",
                    framed,
                    config.connections,
                    config.duration,
                    payloads.GRPC_HEADERS,
                    config.generator_threads,
                )
                seen = TritonCounters.read(server.grpc_url).since(before)
                server_side[f"grpc {n} rows/req"] = seen
                unanswered = max(0, load.requests - int(seen["requests"]))
                rows.append(_row("triton", "grpc", n, replace(load, failures=load.failures + unanswered)))
                console.print(f"  triton grpc {n} row(s)/req: {_summary(load)}")
        meta: dict[str, Any] = {"triton_server_side": server_side}
        if model.variants:
            overhead_rows, meta["overhead"] = bench_overhead(server, model, config)
            rows += overhead_rows
        if "settings" in config.targets:
            settings_rows, meta["settings"] = bench_settings(server, model, config, work)
            rows += settings_rows
        if "routing" in config.targets:
            routing_rows, meta["routing"] = bench_routing(server, model, config)
            rows += routing_rows
        if "capture" in config.targets:
            capture_rows, meta["capture"], meta["capture_spooled"] = bench_capture(server, model, config, work)
            rows += capture_rows
    return rows, meta


def _report(label: str, connections: int, load: LoadResult) -> None:
    console.print(f"    {label}, {connections} connections: {_summary(load)}")


def _side_by_side(
    name: str, urls: dict[str, str], model: BenchModel, config: BenchConfig, levels: Sequence[int]
) -> tuple[list[BenchRow], Interleaved]:
    """Single rows to every URL in interleaved rounds; one pooled row per (label, connections), and the rounds."""
    body = payloads.triton_json(model.tensors(model.rows[:1]))
    for url in urls.values():
        _check_http(url, body, '"label"')
    console.print(
        f"  {name}: {', '.join(urls)}; {config.ab_rounds} interleaved rounds of {config.ab_seconds:g} s "
        f"at {' and '.join(map(str, levels))} connections (a round with over {100 * config.max_steal:g}% of the CPU "
        "stolen by the hypervisor is measured again)"
    )

    def measure(url: str, connections: int) -> LoadResult:
        return run_wrk(url, body, connections, config.ab_seconds, config.generator_threads)

    result = interleaved(urls, levels, config.ab_rounds, measure, config.max_steal, _report)
    for level, repeated in result.repeated.items():
        if repeated:
            console.print(f"  {name} at {level} connections: {repeated} round(s) measured again for stolen CPU")
    rows = [_row("triton", "http", 1, pooled(loads), variant=label) for (label, _), loads in result.runs.items()]
    return rows, result


def bench_overhead(
    server: TritonServer, model: BenchModel, config: BenchConfig
) -> tuple[list[BenchRow], dict[str, dict[str, Any]]]:
    """tritonops, drift counters off and the bare Python backend in interleaved rounds on one server.

    Each (variant, connections) pair becomes one row over all its rounds; the summary gives, per connection
    count, the median over rounds of the paired ratios: what the drift counters cost and how close tritonops
    comes to the bare backend, with every round's req/s.
    """
    urls = {v.label: f"http://{server.http_url}/v2/models/{v.model}/infer" for v in model.variants}
    rows, result = _side_by_side("overhead", urls, model, config, config.connection_levels)
    runs = result.runs
    summary: dict[str, dict[str, Any]] = {}
    for connections in config.connection_levels:
        rps = rounds_rps(runs, connections)
        summary[f"{connections} connections"] = {
            "drift_counters_cost": 1 - paired_median(rps[TRITONOPS], rps[NO_COUNTERS]),
            "of_bare_backend": paired_median(rps[TRITONOPS], rps[BARE]),
            "rounds_rps": rps,
            "rounds_repeated_for_steal": result.repeated[connections],
        }
    return rows, summary


def bench_routing(
    server: TritonServer, model: BenchModel, config: BenchConfig
) -> tuple[list[BenchRow], dict[str, dict[str, Any]]]:
    """The model as converted, at canary weight 0, at weight 0.2 and with a shadow at share 1.0, in interleaved
    rounds on one server; per connection count the paired req/s ratios and the p99 the shadow adds."""
    variants = load_routing_models(server.grpc_url, model.repository, MODEL)
    urls = {v.label: f"http://{server.http_url}/v2/models/{v.model}/infer" for v in variants}
    rows, result = _side_by_side("routing", urls, model, config, config.connection_levels)
    runs = result.runs
    summary: dict[str, dict[str, Any]] = {}
    for connections in config.connection_levels:
        rps = rounds_rps(runs, connections)
        p99 = {label: pooled(loads).p99_ms for (label, level), loads in runs.items() if level == connections}
        summary[f"{connections} connections"] = {
            "weight0_of_as_converted": paired_median(rps[WEIGHT_0], rps[AS_CONVERTED]),
            "weight02_of_weight0": paired_median(rps[WEIGHT_02], rps[WEIGHT_0]),
            "weight02_bls_of_weight0": paired_median(rps[WEIGHT_02_BLS], rps[WEIGHT_0]),
            "shadow_of_weight0": paired_median(rps[SHADOW_1], rps[WEIGHT_0]),
            "shadow_p99_added_ms": p99[SHADOW_1] - p99[WEIGHT_0],
            "rounds_rps": rps,
            "rounds_repeated_for_steal": result.repeated[connections],
        }
    return rows, summary


def bench_capture(
    server: TritonServer, model: BenchModel, config: BenchConfig, work: Path
) -> tuple[list[BenchRow], dict[str, dict[str, Any]], dict[str, int]]:
    """The model with capture off and at share 0.1 in interleaved rounds on one server; per connection count the
    paired req/s ratio and the p99 capture adds, and the rows the capturing model spooled (proof it captured)."""
    spool = work / "capture_spool"
    variants = load_capture_models(server.grpc_url, model.repository, MODEL, spool)
    urls = {v.label: f"http://{server.http_url}/v2/models/{v.model}/infer" for v in variants}
    rows, result = _side_by_side("capture", urls, model, config, config.connection_levels)
    runs = result.runs
    summary: dict[str, dict[str, Any]] = {}
    for connections in config.connection_levels:
        rps = rounds_rps(runs, connections)
        p99 = {label: pooled(loads).p99_ms for (label, level), loads in runs.items() if level == connections}
        summary[f"{connections} connections"] = {
            "capture_of_off": paired_median(rps[CAPTURE_01], rps[CAPTURE_OFF]),
            "copy_of_off": paired_median(rps[CAPTURE_OFF_COPY], rps[CAPTURE_OFF]),
            "capture_p99_added_ms": p99[CAPTURE_01] - p99[CAPTURE_OFF],
            "rounds_rps": rps,
            "rounds_repeated_for_steal": result.repeated[connections],
        }
    capturing = next(v.model for v in variants if v.label == CAPTURE_01)
    # every request it answered: the pre-flight one and the rounds measured again count too
    captured_requests = TritonCounters.read(server.grpc_url, capturing).requests
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.unload_model(capturing)  # finalize flushes the buffered rows and closes the spool file
    deadline = time.monotonic() + 30
    while list(spool.rglob(f"*{OPEN_SUFFIX}")) and time.monotonic() < deadline:  # the unload finishes asynchronously
        time.sleep(0.2)
    return rows, summary, {"requests": captured_requests, "rows": spooled_rows(spool)}


SETTINGS_DEFAULT = "server defaults"
SETTINGS_SUMMARIES = "latency summaries on"
SETTINGS_GLIBC = "system malloc"


def bench_settings(
    server: TritonServer, model: BenchModel, config: BenchConfig, work: Path
) -> tuple[list[BenchRow], dict[str, dict[str, Any]]]:
    """The server's two performance settings priced: the default server against one with Triton's latency
    summaries and one on glibc's malloc, the same model, interleaved rounds at the full connection count."""
    others = {  # the default server's options with one setting changed: the same models loaded everywhere
        SETTINGS_SUMMARIES: replace(server.options, work_dir=work / "summaries", latency_summaries=True),
        SETTINGS_GLIBC: replace(server.options, work_dir=work / "glibc", allocator="system"),
    }
    with contextlib.ExitStack() as stack:
        servers = {SETTINGS_DEFAULT: server}
        servers |= {label: stack.enter_context(TritonServer(options)) for label, options in others.items()}
        urls = {label: f"http://{s.http_url}/v2/models/{MODEL}/infer" for label, s in servers.items()}
        rows, result = _side_by_side("settings", urls, model, config, (config.connections,))
    rps = rounds_rps(result.runs, config.connections)
    summary = {
        f"{config.connections} connections": {
            "latency_summaries_cost": 1 - paired_median(rps[SETTINGS_SUMMARIES], rps[SETTINGS_DEFAULT]),
            "system_malloc_cost": 1 - paired_median(rps[SETTINGS_GLIBC], rps[SETTINGS_DEFAULT]),
            "rounds_rps": rps,
            "rounds_repeated_for_steal": result.repeated[config.connections],
        }
    }
    return rows, summary


def bench_flask(model: BenchModel, config: BenchConfig, work: Path) -> list[BenchRow]:
    process, base = flask_baseline(model.joblib_path, work)
    body = payloads.flask_json(model.rows[:1])
    with process:
        _check_http(f"{base}/predict", body, '"labels"')
        load = run_wrk(f"{base}/predict", body, config.connections, config.duration, config.generator_threads)
    console.print(f"  flask+gunicorn: {_summary(load)}")
    return [_row("flask", "http", 1, load)]


def bench_mlserver(model: BenchModel, config: BenchConfig, work: Path) -> list[BenchRow]:
    process, base = mlserver_peer(model.joblib_path, MODEL, work)
    url = f"{base}/v2/models/{MODEL}/infer"
    body = payloads.mlserver_json(model.rows[:1])
    with process:
        _check_http(url, body, '"predict_proba"')
        load = run_wrk(url, body, config.connections, config.duration, config.generator_threads)
    console.print(f"  mlserver: {_summary(load)}")
    return [_row("mlserver", "http", 1, load)]


def verdicts(
    rows: Sequence[BenchRow],
    config: BenchConfig,
    overhead: dict[str, dict[str, Any]],
    routing: dict[str, dict[str, Any]] | None = None,
    capture: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The DESIGN and issue performance targets, each with the measured value and whether it was met."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: float | None, threshold: float, higher_is_better: bool = True) -> None:
        if value is not None:
            met = value >= threshold if higher_is_better else value <= threshold
            found.append({"target": name, "value": round(value, 3), "threshold": threshold, "met": met})

    for r in rows:
        if r.target != "triton" or r.variant:
            continue
        if r.rows_per_request == 1 and r.connections == config.connections:
            add(f"triton {r.protocol} req/s >= 60x Flask", r.x_flask, 60.0)
            add(f"triton {r.protocol} p99 <= 10 ms", r.p99_ms, 10.0, higher_is_better=False)
            add(f"triton {r.protocol} req/s ahead of MLServer", r.x_mlserver, 1.0)
            add(f"triton {r.protocol} req/s >= 20x MLServer", r.x_mlserver, 20.0)
        if r.rows_per_request == 1 and r.protocol == "http" and r.connections in DESIGN_BARE_RPS:
            figure = DESIGN_BARE_RPS[r.connections]
            add(f"triton http req/s at {r.connections} connections >= DESIGN's {figure:,} (absolute)", r.rps, figure)
        if r.protocol == "grpc" and r.rows_per_request == config.batch_rows:
            add(f"triton grpc {config.batch_rows} rows/req >= 50% of in-process rows/s", r.of_limit, 0.5)
    for level, measured in overhead.items():
        add(f"drift counters cost < 10% of req/s ({level})", measured["drift_counters_cost"], 0.10, False)
        add(f"tritonops >= 90% of the bare Python backend's req/s ({level})", measured["of_bare_backend"], 0.9)
    for level, measured in (routing or {}).items():
        add(f"canary weight 0 >= 97% of the model as converted ({level})", measured["weight0_of_as_converted"], 0.97)
        add(f"canary weight 0.2 >= 90% of weight 0 ({level})", measured["weight02_of_weight0"], 0.9)
        add(f"shadow at share 1.0 >= 80% of weight 0 ({level})", measured["shadow_of_weight0"], 0.8)
        if level == "8 connections":
            add("shadow adds <= 2 ms to p99 at 8 connections", measured["shadow_p99_added_ms"], 2.0, False)
    for level, measured in (capture or {}).items():
        add(f"capture at share 0.1 >= 95% of capture off ({level})", measured["capture_of_off"], 0.95)
    return found


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: version(p) for p in ("nvidia-pytriton", "onnxruntime", "scikit-learn", "Flask", "gunicorn")},
    }


STEPS: dict[str, Callable[[BenchModel, BenchConfig, Path], list[BenchRow]]] = {
    "flask": bench_flask,
    "mlserver": bench_mlserver,
}


def run(config: BenchConfig) -> tuple[list[BenchRow], list[dict[str, Any]], Path]:
    """Run every selected target in turn; returns the rows (with ratios), the verdicts and the JSON path."""
    started = time.monotonic()
    config.out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"machine_before": machine(), "config": {**asdict(config), "out": str(config.out)}}
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="tritonops-bench-") as tmp:
        work = Path(tmp)
        console.print(f"[bold]preparing[/] the model ({config.n_features} features) and its repository")
        model = prepare_model(work, config.n_features, variants="overhead" in config.targets)
        if "inprocess" in config.targets:
            console.print("[bold]in-process[/] ONNX Runtime, 1 thread")
            rows += bench_inprocess(model, config)
        if {"triton-http", "triton-grpc", "overhead", "settings", "routing", "capture"} & set(config.targets):
            console.print(f"[bold]triton[/] {config.connections} connections, {config.duration:g} s per run")
            triton_rows, triton_meta = bench_triton(model, config, work)
            rows += triton_rows
            meta |= triton_meta
            for label, seen in meta["triton_server_side"].items():
                console.print(f"  triton {label}, server side: {seen}")
            for level, measured in meta.get("overhead", {}).items():
                console.print(
                    f"  overhead at {level}: drift counters cost {100 * measured['drift_counters_cost']:.1f}% of "
                    f"req/s; tritonops does {100 * measured['of_bare_backend']:.0f}% of the bare backend's req/s"
                )
            for level, measured in meta.get("routing", {}).items():
                console.print(
                    f"  routing at {level}: weight 0 does {100 * measured['weight0_of_as_converted']:.1f}% of the "
                    f"model as converted, weight 0.2 {100 * measured['weight02_of_weight0']:.1f}% of weight 0, "
                    f"(over BLS {100 * measured['weight02_bls_of_weight0']:.1f}%), "
                    f"shadow 1.0 {100 * measured['shadow_of_weight0']:.1f}% (p99 "
                    f"{measured['shadow_p99_added_ms']:+.2f} ms)"
                )
            for level, measured in meta.get("capture", {}).items():
                console.print(
                    f"  capture at {level}: share 0.1 does {100 * measured['capture_of_off']:.1f}% of capture "
                    f"off's req/s (p99 {measured['capture_p99_added_ms']:+.2f} ms); a copy of capture off does "
                    f"{100 * measured['copy_of_off']:.1f}% (what the method reads when nothing differs)"
                )
            if "capture_spooled" in meta:
                spooled = meta["capture_spooled"]
                console.print(f"  capture spooled {spooled['rows']:,} rows of {spooled['requests']:,} requests")
            for level, measured in meta.get("settings", {}).items():
                console.print(
                    f"  settings at {level}: Triton's latency summaries cost "
                    f"{100 * measured['latency_summaries_cost']:.1f}% of req/s, glibc's malloc "
                    f"{100 * measured['system_malloc_cost']:.1f}%"
                )
        for name, step in STEPS.items():
            if name in config.targets:
                console.print(f"[bold]{name}[/] {config.connections} connections, {config.duration:g} s")
                try:
                    rows += step(model, config, work)
                except BenchmarkError as exc:  # a peer that can't run is reported, the others still count
                    console.print(f"  [yellow]skipped {name}:[/] {exc}")
                    meta.setdefault("skipped", {})[name] = str(exc)
    rows = with_ratios(rows)
    found = verdicts(rows, config, meta.get("overhead", {}), meta.get("routing", {}), meta.get("capture", {}))
    meta["machine_after"] = {"load_average": os.getloadavg()}
    meta["seconds"] = round(time.monotonic() - started, 1)
    title = f"tritonops bench: {meta['machine_before']['cores']} cores, {config.connections} connections"
    render(rows, console, title)
    for verdict in found:
        mark = "[green]met[/]" if verdict["met"] else "[red]missed[/]"
        console.print(f"  {mark}  {verdict['target']}: {verdict['value']}")
    json_path = config.out / "bench.json"
    write_json(json_path, rows, meta, found)
    write_chart(config.out / "bench.png", rows, title)
    (config.out / "bench.md").write_text(markdown(rows, found), encoding="utf-8")
    console.print(f"wrote bench.json, bench.png and bench.md to {config.out} in {meta['seconds']} s")
    return rows, found, json_path


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="python -m tritonops.loadtest.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per target (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated subset of {','.join(ALL_TARGETS)} (default: all)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for bench.json and bench.png")
    parser.add_argument("--inprocess-seconds", type=float, default=3.0, help="seconds per in-process batch size")
    parser.add_argument("--batch-rows", type=int, default=256, help="rows per request in the batched runs")
    parser.add_argument("--threads", type=int, default=1, help="load-generator threads (wrk / h2load)")
    parser.add_argument(
        "--low-connections", type=int, default=8, help="also load single-row HTTP at this many connections (default 8)"
    )
    parser.add_argument(
        "--ab-rounds", type=int, default=3, help="interleaved rounds of the overhead and settings targets (default 3)"
    )
    parser.add_argument("--ab-seconds", type=float, default=3.0, help="seconds per A/B run (default 3)")
    parser.add_argument(
        "--max-steal",
        type=float,
        default=0.05,
        help="measure an interleaved round again when the hypervisor stole more than this share of the CPU from one "
        "of its runs (0-1, default 0.05; 1 = never)",
    )
    args = parser.parse_args(argv)
    return BenchConfig(
        duration=args.duration,
        connections=args.connections,
        targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        out=args.out,
        inprocess_seconds=args.inprocess_seconds,
        batch_rows=args.batch_rows,
        generator_threads=args.threads,
        low_connections=args.low_connections,
        ab_rounds=args.ab_rounds,
        ab_seconds=args.ab_seconds,
        max_steal=args.max_steal,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except BenchmarkError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
